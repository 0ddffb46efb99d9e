package dev.flowship.kafka;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Hands every Kafka record to Python as a row that carries its provenance.
 *
 * <p>Fields: {@code topic STRING, partition INT, offset BIGINT, timestamp BIGINT, key BYTES,
 * value BYTES}. Nothing is decoded here: payload decoding (and dead-lettering of records that do
 * not decode) happens in Python, so that a malformed payload can never fail the source and the
 * source's offsets always advance in step with the checkpoint.
 */
public final class ProvenanceDeserializationSchema implements KafkaRecordDeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    public static final String[] FIELD_NAMES =
            new String[] {"topic", "partition", "offset", "timestamp", "key", "value"};

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<Row> out) {
        out.collect(
                Row.of(
                        record.topic(),
                        record.partition(),
                        record.offset(),
                        record.timestamp(),
                        record.key(),
                        record.value()));
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return producedType();
    }

    /** The row type this schema produces; Python declares the same fields. */
    public static TypeInformation<Row> producedType() {
        return Types.ROW_NAMED(
                FIELD_NAMES,
                Types.STRING,
                Types.INT,
                Types.LONG,
                Types.LONG,
                Types.PRIMITIVE_ARRAY(Types.BYTE),
                Types.PRIMITIVE_ARRAY(Types.BYTE));
    }
}
