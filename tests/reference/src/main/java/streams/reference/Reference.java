package streams.reference;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.SessionWindowedDeserializer;
import org.apache.kafka.streams.kstream.TimeWindowedDeserializer;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.test.TestRecord;

/**
 * Runs conformance scenarios through Kafka Streams' own TopologyTestDriver.
 *
 * <p>Reads one scenario per line on stdin:
 * {@code {"topology": NAME, "events": [{"topic", "key", "value", "ts"} | {"advance": MS}]}}
 * and answers each with one line on stdout: {@code {"outputs": [{"event", "topic", "key",
 * "value", "ts"}]}} (every record the topology wrote to its output topics, in order, read after
 * each event) or {@code {"error": MESSAGE}}. {@code list} answers with the catalogue's names.
 */
public final class Reference {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** The driver's state directory: in memory where the machine has a tmpfs (the driver
     *  flushes RocksDB on every commit, that is after every record). */
    private static final String STATE_DIR = stateDir();

    private static String stateDir() {
        final java.io.File shm = new java.io.File("/dev/shm");
        final java.io.File base = shm.isDirectory() && shm.canWrite() ? shm : new java.io.File(System.getProperty("java.io.tmpdir"));
        return new java.io.File(base, "streams-reference-" + ProcessHandle.current().pid()).getPath();
    }

    public static void main(final String[] args) throws Exception {
        // Kafka Streams logs through slf4j (no-op here); anything printed to stdout would break
        // the protocol, so stdout is kept for answers only.
        final PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        System.setOut(System.err);
        final BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            String answer;
            if (line.trim().equals("list")) {
                final ArrayNode names = JSON.createArrayNode();
                Catalogue.TOPOLOGIES.keySet().forEach(names::add);
                answer = JSON.writeValueAsString(names);
            } else {
                try {
                    answer = JSON.writeValueAsString(run(JSON.readTree(line)));
                } catch (final Throwable e) {
                    final ObjectNode error = JSON.createObjectNode();
                    final StringWriter trace = new StringWriter();
                    e.printStackTrace(new PrintWriter(trace));
                    error.put("error", trace.toString());
                    answer = JSON.writeValueAsString(error);
                }
            }
            out.println(answer);
            out.flush();
        }
    }

    private static ObjectNode run(final JsonNode scenario) {
        final String name = scenario.get("topology").asText();
        final Catalogue.Entry entry = Catalogue.TOPOLOGIES.get(name);
        if (entry == null) {
            throw new IllegalArgumentException("no topology named " + name);
        }
        final Properties config = new Properties();
        config.put(StreamsConfig.APPLICATION_ID_CONFIG, "conformance");
        config.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
        config.put(StreamsConfig.STATE_DIR_CONFIG, STATE_DIR);
        config.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        config.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        // Kafka Streams throttles the emission of expired left/outer stream-stream join results
        // to once per second of wall-clock time (an optimization of its RocksDB scans); the
        // project emits them as soon as stream time closes their window. Without the throttle
        // the two agree record for record (README: "Differences from Kafka Streams").
        config.put(StreamsConfig.InternalConfig.EMIT_INTERVAL_MS_KSTREAMS_OUTER_JOIN_SPURIOUS_RESULTS_FIX, 0L);
        // The same throttle applies to emit-final windowed aggregations (EmitStrategy.onWindowClose).
        config.put(StreamsConfig.InternalConfig.EMIT_INTERVAL_MS_KSTREAMS_WINDOWED_AGGREGATION, 0L);
        final ObjectNode result = JSON.createObjectNode();
        final ArrayNode outputs = result.putArray("outputs");
        try (TopologyTestDriver driver = new TopologyTestDriver(entry.topology().get(), config, Instant.ofEpochMilli(0))) {
            final Map<String, TestInputTopic<String, String>> inputs = new HashMap<>();
            final Map<String, TestOutputTopic<?, ?>> outs = new HashMap<>();
            for (final Catalogue.Output output : entry.outputs()) {
                outs.put(output.topic(), driver.createOutputTopic(output.topic(), keyDeserializer(output), valueDeserializer(output)));
            }
            int index = 0;
            for (final JsonNode event : scenario.get("events")) {
                if (event.has("advance")) {
                    driver.advanceWallClockTime(Duration.ofMillis(event.get("advance").asLong()));
                } else {
                    final String topic = event.get("topic").asText();
                    final TestInputTopic<String, String> input = inputs.computeIfAbsent(
                        topic, t -> driver.createInputTopic(t, new StringSerializer(), new StringSerializer()));
                    final JsonNode value = event.get("value");
                    input.pipeInput(event.get("key").asText(), value == null || value.isNull() ? null : value.asText(),
                        event.get("ts").asLong());
                }
                for (final Catalogue.Output output : entry.outputs()) {
                    for (final TestRecord<?, ?> record : outs.get(output.topic()).readRecordsToList()) {
                        final ObjectNode o = outputs.addObject();
                        o.put("event", index);
                        o.put("topic", output.topic());
                        o.put("key", render(record.key()));
                        o.put("value", record.value() == null ? null : render(record.value()));
                        o.put("ts", record.timestamp());
                    }
                }
                index++;
            }
        }
        return result;
    }

    private static String render(final Object value) {
        if (value instanceof Windowed<?> w) {
            return w.key() + "@" + w.window().start() + "/" + w.window().end();
        }
        return String.valueOf(value);
    }

    private static Deserializer<?> keyDeserializer(final Catalogue.Output output) {
        return switch (output.key()) {
            case STRING -> new StringDeserializer();
            case TIME_WINDOWED -> new TimeWindowedDeserializer<>(new StringDeserializer(), output.windowSize());
            case SESSION_WINDOWED -> new SessionWindowedDeserializer<>(new StringDeserializer());
        };
    }

    private static Deserializer<?> valueDeserializer(final Catalogue.Output output) {
        return output.longValues() ? new LongDeserializer() : new StringDeserializer();
    }
}
