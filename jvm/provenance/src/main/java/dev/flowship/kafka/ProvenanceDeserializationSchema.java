package dev.flowship.kafka;

import java.nio.ByteBuffer;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * Hands every Kafka record to Python with its provenance, packed in one byte array.
 *
 * <p>One array per record crosses into Python as a single object, instead of a row whose every
 * field costs a conversion of its own. Layout, integers big-endian:
 *
 * <pre>
 *   int32 partition | int64 offset | int64 timestamp | int32 keyLength (-1: null)
 *   | int32 valueLength (-1: null) | key | value
 * </pre>
 *
 * The topic is not packed: every flowship source reads one topic, which Python knows. Nothing is
 * decoded here: payload decoding (and dead-lettering of records that do not decode) happens in
 * Python, so that a malformed payload can never fail the source and the source's offsets always
 * advance in step with the checkpoint.
 */
public final class ProvenanceDeserializationSchema
        implements KafkaRecordDeserializationSchema<byte[]> {
    private static final long serialVersionUID = 2L;

    /** Bytes before the key: partition, offset, timestamp, key length, value length. */
    public static final int HEADER_BYTES = 4 + 8 + 8 + 4 + 4;

    @Override
    public void deserialize(ConsumerRecord<byte[], byte[]> record, Collector<byte[]> out) {
        byte[] key = record.key();
        byte[] value = record.value();
        int keyLength = key == null ? 0 : key.length;
        int valueLength = value == null ? 0 : value.length;
        ByteBuffer buf = ByteBuffer.allocate(HEADER_BYTES + keyLength + valueLength);
        buf.putInt(record.partition())
                .putLong(record.offset())
                .putLong(record.timestamp())
                .putInt(key == null ? -1 : keyLength)
                .putInt(value == null ? -1 : valueLength);
        if (key != null) {
            buf.put(key);
        }
        if (value != null) {
            buf.put(value);
        }
        out.collect(buf.array());
    }

    @Override
    public TypeInformation<byte[]> getProducedType() {
        return PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO;
    }
}
