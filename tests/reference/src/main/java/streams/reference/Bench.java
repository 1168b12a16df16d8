package streams.reference;

import java.time.Duration;
import java.util.Arrays;
import java.util.Properties;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;

/**
 * One of the benchmark topologies as a real Kafka Streams application, for {@code make
 * bench-kafka} (benches/kafka.rs runs the same topologies through this project).
 *
 * <p>Arguments: {@code TOPOLOGY BOOTSTRAP APPLICATION_ID STATE_DIR GUARANTEE OUTPUT INPUT...},
 * then {@code key=value} settings passed to Kafka Streams as they are. Prints {@code RUNNING}
 * once the application runs; closes when stdin closes.
 */
public final class Bench {
    private static final Serde<String> S = Serdes.String();

    public static void main(final String[] args) throws Exception {
        final String topology = args[0];
        final String output = args[5];
        final String[] inputs = Arrays.stream(args, 6, args.length).filter(a -> !a.contains("=")).toArray(String[]::new);
        final Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[2]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[3]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args[4]);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        Arrays.stream(args, 6, args.length).filter(a -> a.contains("=")).forEach(a -> {
            final int eq = a.indexOf('=');
            props.put(a.substring(0, eq), a.substring(eq + 1));
        });

        final StreamsBuilder b = new StreamsBuilder();
        switch (topology) {
            case "stateless" -> b.stream(inputs[0], Consumed.with(S, S))
                .filter((k, line) -> !line.isEmpty())
                .mapValues(line -> line.toUpperCase())
                .to(output, Produced.with(S, S));
            case "word-count" -> b.stream(inputs[0], Consumed.with(S, S))
                .flatMapValues(line -> Arrays.asList(line.toLowerCase().split("\\W+")))
                .filter((k, word) -> !word.isEmpty())
                .groupBy((k, word) -> word, Grouped.with(S, S))
                .count()
                .toStream()
                .to(output, Produced.with(S, Serdes.Long()));
            case "windowed-count" -> b.stream(inputs[0], Consumed.with(S, S))
                .groupByKey(Grouped.with(S, S))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(10), Duration.ofSeconds(1)))
                .count()
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .map((w, count) -> KeyValue.pair(w.key() + "@" + w.window().start(), count))
                .to(output, Produced.with(S, Serdes.Long()));
            case "stream-join" -> b.stream(inputs[0], Consumed.with(S, S))
                .join(b.stream(inputs[1], Consumed.with(S, S)), (l, r) -> l + "+" + r,
                    JoinWindows.ofTimeDifferenceAndGrace(Duration.ofSeconds(5), Duration.ofSeconds(1)),
                    StreamJoined.with(S, S, S))
                .to(output, Produced.with(S, S));
            case "table-join" -> b.table(inputs[0], Consumed.with(S, S))
                .join(b.table(inputs[1], Consumed.with(S, S)), (l, r) -> l + "+" + r)
                .toStream()
                .to(output, Produced.with(S, S));
            default -> throw new IllegalArgumentException("unknown topology " + topology);
        }

        final KafkaStreams streams = new KafkaStreams(b.build(), props);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                System.out.println("RUNNING");
                System.out.flush();
            }
        });
        streams.start();
        while (System.in.read() != -1) {
            // Runs until stdin closes.
        }
        streams.close(Duration.ofSeconds(60));
        System.out.println("CLOSED");
    }
}
