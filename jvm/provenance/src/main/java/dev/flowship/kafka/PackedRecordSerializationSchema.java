package dev.flowship.kafka;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;

/**
 * Writes records packed in Python to one Kafka topic, headers included.
 *
 * <p>Each element is one byte array, so a record crosses from Python to the JVM as a single
 * object instead of a row of fields (which costs a conversion per field):
 *
 * <pre>
 *   int32 keyLength (-1: no key) | key | int32 headersLength | headers | value (the rest)
 * </pre>
 *
 * All integers are big-endian. {@code headers} is UTF-8 text of alternating names and values
 * separated by NUL ({@code name\0value\0name\0value}); Python's {@code flowship.kafka} packs it.
 * Used for the main outputs (input provenance in headers, for later output diffs) and for the
 * dead-letter topic (error and provenance in headers).
 *
 * <p>Output routing: a record whose headers include {@code flowship.route=side} goes to the side
 * topic ({@link #withSideTopic}) instead, in the same transaction as the others, so for every
 * input record its outputs reach exactly one of the two topics.
 */
public final class PackedRecordSerializationSchema implements KafkaRecordSerializationSchema<byte[]> {
    private static final long serialVersionUID = 3L;

    private static final String ROUTE = "flowship.route";
    private static final byte[] SIDE = "side".getBytes(StandardCharsets.UTF_8);

    private String topic;
    private String sideTopic;

    /** Where records routed aside go (see the class comment); set before the sink is built. */
    public PackedRecordSerializationSchema withSideTopic(String sideTopic) {
        this.sideTopic = sideTopic;
        return this;
    }

    /** The topic every record goes to; set once, before the sink is built. */
    public PackedRecordSerializationSchema withTopic(String topic) {
        this.topic = topic;
        return this;
    }

    @Override
    public ProducerRecord<byte[], byte[]> serialize(
            byte[] element, KafkaSinkContext context, Long timestamp) {
        if (topic == null) {
            throw new IllegalStateException("flowship sink has no topic: call withTopic first");
        }
        ByteBuffer buf = ByteBuffer.wrap(element);
        int keyLength = buf.getInt();
        byte[] key = null;
        if (keyLength >= 0) {
            key = new byte[keyLength];
            buf.get(key);
        }
        int headersLength = buf.getInt();
        List<Header> headers = parseHeaders(element, buf.position(), headersLength);
        int valueStart = buf.position() + headersLength;
        byte[] value = Arrays.copyOfRange(element, valueStart, element.length);
        String target = topic;
        for (Header header : headers) {
            if (ROUTE.equals(header.key()) && Arrays.equals(SIDE, header.value())) {
                if (sideTopic == null) {
                    throw new IllegalStateException(
                            "flowship sink for " + topic + " got a record routed aside but has no"
                                    + " side topic: the job's control plane is off");
                }
                target = sideTopic;
            }
        }
        return new ProducerRecord<>(target, null, timestamp, key, value, headers);
    }

    static List<Header> parseHeaders(byte[] packed, int start, int length) {
        List<Header> headers = new ArrayList<>();
        if (length == 0) {
            return headers;
        }
        int end = start + length;
        int at = start;
        String name = null;
        for (int i = start; i <= end; i++) {
            if (i == end || packed[i] == 0) {
                if (name == null) {
                    name = new String(packed, at, i - at, StandardCharsets.UTF_8);
                } else {
                    headers.add(new RecordHeader(name, Arrays.copyOfRange(packed, at, i)));
                    name = null;
                }
                at = i + 1;
            }
        }
        if (name != null) {
            throw new IllegalArgumentException(
                    "flowship sink headers must alternate name and value; '" + name
                            + "' has no value");
        }
        return headers;
    }
}
