package dev.flowship.state;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.state.hashmap.HashMapStateBackend;
import org.apache.flink.state.api.OperatorIdentifier;
import org.apache.flink.state.api.SavepointReader;
import org.apache.flink.state.api.functions.KeyedStateReaderFunction;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.Collector;

/**
 * Reads every key of the keyed state that flowship's Python operators keep in a savepoint or a
 * retained checkpoint, with Flink's State Processor API, and writes the raw stored strings.
 *
 * <p>PyFlink's keyed Python operators (thread mode) key their state by {@code Row(key)} (the
 * job's {@code key_by(..., key_type=...)}, pickled bytes when no key type is given) and keep
 * flowship state as {@code STRING} value, map ({@code STRING -> STRING}) and list states in the
 * {@code VoidNamespace}: the same descriptors are registered here, so every key of every state
 * is read, not only keys a sample of input touches. The key type is not recorded anywhere a
 * reader can see, so the candidates below are tried in turn until the savepoint's key
 * serializer accepts one.
 *
 * <p>Usage: {@code DumpKeyedState SAVEPOINT OUT_FILE UID:STATE=KIND[,STATE=KIND...] ...} with
 * KIND one of value, map, list. Output lines, tab-separated (base64 fields are UTF-8 text, the
 * raw value is the stored string's latin-1 bytes):
 *
 * <pre>
 * K uid key-type                           the key type that matched for uid
 * V uid state b64(key) b64(entry) b64(raw)  one stored value (entry: map key or list index)
 * M uid message                            the savepoint has no state for uid
 * E uid message                            reading uid failed
 * </pre>
 */
public final class DumpKeyedState {

    private DumpKeyedState() {}

    /** Key types tried in order: the names are reported back to Python. */
    private static Map<String, TypeInformation<Row>> keyTypes() throws ClassNotFoundException {
        Map<String, TypeInformation<Row>> out = new LinkedHashMap<>();
        out.put("string", Types.ROW(Types.STRING));
        out.put("long", Types.ROW(Types.LONG));
        out.put("int", Types.ROW(Types.INT));
        try {
            Class<?> pickled =
                    Class.forName(
                            "org.apache.flink.streaming.api.typeinfo.python.PickledByteArrayTypeInfo");
            TypeInformation<?> info =
                    (TypeInformation<?>) pickled.getField("PICKLED_BYTE_ARRAY_TYPE_INFO").get(null);
            out.put("pickled", Types.ROW(info));
        } catch (ReflectiveOperationException e) {
            // flink-python is not on the class path: pickled keys cannot be read
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println(
                    "usage: DumpKeyedState SAVEPOINT OUT_FILE UID:STATE=KIND[,STATE=KIND...] ...");
            System.exit(2);
        }
        String savepoint = args[0];
        try (BufferedWriter out = Files.newBufferedWriter(Paths.get(args[1]), StandardCharsets.UTF_8)) {
            for (int i = 2; i < args.length; i++) {
                int colon = args[i].indexOf(':');
                String uid = args[i].substring(0, colon);
                List<String[]> states = new ArrayList<>();
                for (String spec : args[i].substring(colon + 1).split(",")) {
                    states.add(spec.split("=", 2));
                }
                dumpOperator(savepoint, uid, states, out);
                out.flush();
            }
        }
    }

    private static void dumpOperator(
            String savepoint, String uid, List<String[]> states, BufferedWriter out)
            throws Exception {
        String lastError = null;
        for (Map.Entry<String, TypeInformation<Row>> candidate : keyTypes().entrySet()) {
            StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
            env.setParallelism(1);
            DataStream<String> lines;
            try {
                SavepointReader reader =
                        SavepointReader.read(env, savepoint, new HashMapStateBackend());
                lines =
                        reader.readKeyedState(
                                OperatorIdentifier.forUid(uid),
                                new Reader(uid, states),
                                candidate.getValue(),
                                Types.STRING);
            } catch (Exception e) {
                String text = chain(e);
                if (text.contains("does not contain state with operator")) {
                    line(out, "M", uid, oneLine(text));
                    return;
                }
                line(out, "E", uid, oneLine(text));
                return;
            }
            List<String> collected = new ArrayList<>();
            try (CloseableIterator<String> it = lines.executeAndCollect("flowship-dump-" + uid)) {
                while (it.hasNext()) {
                    collected.add(it.next());
                }
            } catch (Exception e) {
                String text = chain(e);
                if (text.toLowerCase().contains("key serializer")) {
                    lastError = text;
                    continue; // not this key type: try the next one
                }
                line(out, "E", uid, oneLine(text));
                return;
            }
            line(out, "K", uid, candidate.getKey());
            for (String l : collected) {
                out.write(l);
                out.write('\n');
            }
            return;
        }
        line(
                out,
                "E",
                uid,
                "no supported key type (string, long, int, pickled) matches the savepoint's key "
                        + "serializer: "
                        + oneLine(String.valueOf(lastError)));
    }

    private static void line(BufferedWriter out, String... fields) throws IOException {
        out.write(String.join("\t", fields));
        out.write('\n');
    }

    private static String chain(Throwable e) {
        StringBuilder text = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            text.append(t.getClass().getName()).append(": ").append(t.getMessage()).append(" | ");
        }
        return text.toString();
    }

    private static String oneLine(String text) {
        String flat = text.replace('\t', ' ').replace('\n', ' ').replace('\r', ' ');
        return flat.length() > 4000 ? flat.substring(0, 4000) : flat;
    }

    static String b64(String text) {
        return Base64.getEncoder().encodeToString(text.getBytes(StandardCharsets.UTF_8));
    }

    static String b64Raw(String stored) {
        // flowship stores its bytes as a latin-1 string: map each char back to one byte
        return Base64.getEncoder().encodeToString(stored.getBytes(StandardCharsets.ISO_8859_1));
    }

    static String renderKey(Row key) {
        Object field = key.getArity() == 1 ? key.getField(0) : key;
        if (field instanceof byte[]) {
            StringBuilder hex = new StringBuilder("0x");
            for (byte b : (byte[]) field) {
                hex.append(String.format("%02x", b));
            }
            return hex.toString();
        }
        return String.valueOf(field);
    }

    /** Registers the declared states of one operator and emits each key's stored values. */
    static final class Reader extends KeyedStateReaderFunction<Row, String> {
        private static final long serialVersionUID = 1L;
        private final String uid;
        private final List<String[]> specs;
        private transient List<Object> handles;

        Reader(String uid, List<String[]> specs) {
            this.uid = uid;
            this.specs = specs;
        }

        @Override
        public void open(OpenContext context) {
            handles = new ArrayList<>();
            for (String[] spec : specs) {
                String name = spec[0];
                switch (spec[1]) {
                    case "map":
                        handles.add(
                                getRuntimeContext()
                                        .getMapState(
                                                new MapStateDescriptor<>(
                                                        name, Types.STRING, Types.STRING)));
                        break;
                    case "list":
                        handles.add(
                                getRuntimeContext()
                                        .getListState(new ListStateDescriptor<>(name, Types.STRING)));
                        break;
                    default:
                        handles.add(
                                getRuntimeContext()
                                        .getState(new ValueStateDescriptor<>(name, Types.STRING)));
                }
            }
        }

        @Override
        @SuppressWarnings("unchecked")
        public void readKey(Row key, Context ctx, Collector<String> out) throws Exception {
            String k = b64(renderKey(key));
            for (int i = 0; i < specs.size(); i++) {
                String name = specs.get(i)[0];
                Object handle = handles.get(i);
                String prefix = "V\t" + uid + "\t" + name + "\t" + k + "\t";
                if (handle instanceof MapState) {
                    for (Map.Entry<String, String> e : ((MapState<String, String>) handle).entries()) {
                        if (e.getValue() != null) {
                            out.collect(prefix + b64(e.getKey()) + "\t" + b64Raw(e.getValue()));
                        }
                    }
                } else if (handle instanceof ListState) {
                    Iterable<String> items = ((ListState<String>) handle).get();
                    if (items != null) {
                        int index = 0;
                        Iterator<String> it = items.iterator();
                        while (it.hasNext()) {
                            String item = it.next();
                            if (item != null) {
                                out.collect(prefix + b64(String.valueOf(index)) + "\t" + b64Raw(item));
                            }
                            index++;
                        }
                    }
                } else {
                    String value = ((ValueState<String>) handle).value();
                    if (value != null) {
                        out.collect(prefix + "\t" + b64Raw(value));
                    }
                }
            }
        }
    }
}
