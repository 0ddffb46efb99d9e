package dev.flowship.kafka;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.types.Row;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;

/**
 * Writes rows prepared in Python to Kafka, headers included.
 *
 * <p>Row fields: {@code topic STRING, key BYTES (nullable), value BYTES, headers STRING
 * (nullable)}. {@code headers} holds alternating names and values separated by NUL characters
 * ({@code name\0value\0name\0value}); Python's {@code flowship.kafka} encodes it. Used for the
 * main outputs (input provenance in headers, for later output diffs) and for the dead-letter
 * topic (error and provenance in headers).
 */
public final class HeaderRowSerializationSchema implements KafkaRecordSerializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public ProducerRecord<byte[], byte[]> serialize(
            Row element, KafkaSinkContext context, Long timestamp) {
        String topic = (String) element.getField(0);
        if (topic == null) {
            throw new IllegalArgumentException("flowship sink row has no topic: " + element);
        }
        byte[] key = (byte[]) element.getField(1);
        byte[] value = (byte[]) element.getField(2);
        String headers = (String) element.getField(3);
        return new ProducerRecord<>(topic, null, timestamp, key, value, parseHeaders(headers));
    }

    static List<Header> parseHeaders(String encoded) {
        List<Header> headers = new ArrayList<>();
        if (encoded == null || encoded.isEmpty()) {
            return headers;
        }
        String[] parts = encoded.split("\u0000", -1);
        if (parts.length % 2 != 0) {
            throw new IllegalArgumentException(
                    "flowship sink headers must alternate name and value, got "
                            + parts.length
                            + " parts");
        }
        for (int i = 0; i < parts.length; i += 2) {
            headers.add(new RecordHeader(parts[i], parts[i + 1].getBytes(StandardCharsets.UTF_8)));
        }
        return headers;
    }
}
