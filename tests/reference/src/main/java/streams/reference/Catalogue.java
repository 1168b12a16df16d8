package streams.reference;

import java.time.Duration;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Supplier;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.CogroupedKStream;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.Joined;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.kstream.SessionWindows;
import org.apache.kafka.streams.kstream.SlidingWindows;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.Suppressed.BufferConfig;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.ValueTransformerWithKey;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.kstream.WindowedSerdes;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.SessionStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The conformance catalogue, Kafka Streams' side: each topology here has a twin of the same name
 * in tests/conformance/catalogue.rs, built with the same operators, functions and options.
 * Inputs are strings; every topology writes to "out".
 */
final class Catalogue {
    enum KeyKind { STRING, TIME_WINDOWED, SESSION_WINDOWED }

    /** An output topic and how to read it. */
    record Output(String topic, KeyKind key, long windowSize, boolean longValues) {}

    record Entry(Supplier<Topology> topology, List<Output> outputs) {}

    static final long SIZE = 10;
    static final long ADVANCE = 5;
    static final long GRACE = 5;
    static final long GAP = 5;
    static final long DIFFERENCE = 10;
    static final long TIME_LIMIT = 10;
    static final long HISTORY = 10;

    static final Map<String, Entry> TOPOLOGIES = new LinkedHashMap<>();

    private static final Serde<String> S = Serdes.String();
    private static final Serde<Long> L = Serdes.Long();
    private static final Output STRINGS = new Output("out", KeyKind.STRING, 0, false);
    private static final Output COUNTS = new Output("out", KeyKind.STRING, 0, true);

    private static void add(final String name, final Output output, final Consumer<StreamsBuilder> build) {
        TOPOLOGIES.put(name, new Entry(() -> {
            final StreamsBuilder builder = new StreamsBuilder();
            build.accept(builder);
            return builder.build();
        }, List.of(output)));
    }

    // The functions both sides share.

    /** The first word of a value. */
    static String first(final String value) {
        final int space = value.indexOf(' ');
        return space < 0 ? value : value.substring(0, space);
    }

    /** `aggregate` without its first occurrence of `value`. */
    static String remove(final String aggregate, final String value) {
        final int at = aggregate.indexOf(value);
        return at < 0 ? aggregate : aggregate.substring(0, at) + aggregate.substring(at + value.length());
    }

    static String join(final String left, final String right) {
        return left + "+" + right;
    }

    private static KStream<String, String> stream(final StreamsBuilder b, final String topic) {
        return b.stream(topic, Consumed.with(S, S));
    }

    private static KTable<String, String> table(final StreamsBuilder b, final String topic) {
        return b.table(topic, Consumed.with(S, S));
    }

    private static KGroupedStream<String, String> grouped(final StreamsBuilder b) {
        return stream(b, "in").groupByKey(Grouped.with(S, S));
    }

    private static <V> Materialized<String, V, KeyValueStore<Bytes, byte[]>> kv(final Serde<V> values, final boolean cached) {
        final Materialized<String, V, KeyValueStore<Bytes, byte[]>> m = Materialized.with(S, values);
        return cached ? m.withCachingEnabled() : m.withCachingDisabled();
    }

    private static <V> Materialized<String, V, WindowStore<Bytes, byte[]>> windows(final Serde<V> values, final boolean cached) {
        final Materialized<String, V, WindowStore<Bytes, byte[]>> m = Materialized.with(S, values);
        return cached ? m.withCachingEnabled() : m.withCachingDisabled();
    }

    private static <V> Materialized<String, V, SessionStore<Bytes, byte[]>> sessions(final Serde<V> values, final boolean cached) {
        final Materialized<String, V, SessionStore<Bytes, byte[]>> m = Materialized.with(S, values);
        return cached ? m.withCachingEnabled() : m.withCachingDisabled();
    }

    /** A table in a versioned store keeping {@code HISTORY} ms of versions. */
    private static KTable<String, String> versionedTable(final StreamsBuilder b, final String topic) {
        return b.table(topic, Consumed.with(S, S),
            Materialized.<String, String>as(Stores.persistentVersionedKeyValueStore(topic + "-versioned", Duration.ofMillis(HISTORY)))
                .withKeySerde(S).withValueSerde(S));
    }

    private static void toOut(final KTable<String, String> table) {
        table.toStream().to("out", Produced.with(S, S));
    }

    private static void countsOut(final KTable<String, Long> table) {
        table.toStream().to("out", Produced.with(S, L));
    }

    private static <V> void windowedOut(final KTable<Windowed<String>, V> table, final long size, final Serde<V> values) {
        table.toStream().to("out", Produced.with(WindowedSerdes.timeWindowedSerdeFrom(String.class, size), values));
    }

    private static <V> void sessionOut(final KTable<Windowed<String>, V> table, final Serde<V> values) {
        table.toStream().to("out", Produced.with(WindowedSerdes.sessionWindowedSerdeFrom(String.class), values));
    }

    private static Output windowed(final long size, final boolean longs) {
        return new Output("out", KeyKind.TIME_WINDOWED, size, longs);
    }

    private static Output session(final boolean longs) {
        return new Output("out", KeyKind.SESSION_WINDOWED, 0, longs);
    }

    private static Duration ms(final long ms) {
        return Duration.ofMillis(ms);
    }

    private static void streamJoin(final String name, final JoinWindows windows, final String kind) {
        add(name, STRINGS, b -> {
            final KStream<String, String> l = stream(b, "l");
            final KStream<String, String> r = stream(b, "r");
            final StreamJoined<String, String, String> joined = StreamJoined.with(S, S, S);
            final KStream<String, String> out = switch (kind) {
                case "inner" -> l.join(r, Catalogue::join, windows, joined);
                case "left" -> l.leftJoin(r, Catalogue::join, windows, joined);
                default -> l.outerJoin(r, Catalogue::join, windows, joined);
            };
            out.to("out", Produced.with(S, S));
        });
    }

    static {
        add("word-count", COUNTS, b -> countsOut(stream(b, "in")
            .flatMapValues(v -> Arrays.asList(v.split(" ")))
            .groupBy((k, w) -> w, Grouped.with(S, S))
            .count()));
        for (final boolean cached : new boolean[] {true, false}) {
            final String suffix = cached ? "-cached" : "-uncached";
            add("stream-count" + suffix, COUNTS, b -> countsOut(grouped(b).count(kv(L, cached))));
            add("stream-reduce" + suffix, STRINGS, b -> toOut(grouped(b).reduce((a, v) -> a + "|" + v, kv(S, cached))));
            add("stream-aggregate" + suffix, STRINGS, b -> toOut(grouped(b).aggregate(() -> "", (k, v, a) -> a + v, kv(S, cached))));
            add("tumbling-count" + suffix, windowed(SIZE, true), b -> windowedOut(
                grouped(b).windowedBy(TimeWindows.ofSizeAndGrace(ms(SIZE), ms(GRACE))).count(windows(L, cached)), SIZE, L));
            add("session-aggregate" + suffix, session(false), b -> sessionOut(
                grouped(b).windowedBy(SessionWindows.ofInactivityGapAndGrace(ms(GAP), ms(GRACE)))
                    .aggregate(() -> "", (k, v, a) -> a + v, (k, a1, a2) -> a1 + a2, sessions(S, cached)), S));
        }
        add("table-source", STRINGS, b -> toOut(table(b, "t")));
        add("table-source-materialized", STRINGS, b -> toOut(b.table("t", Consumed.with(S, S), kv(S, true))));
        add("table-filter", STRINGS, b -> toOut(table(b, "t").filter((k, v) -> v.length() > 1)));
        add("table-map-values", STRINGS, b -> toOut(table(b, "t").mapValues(v -> v + "!")));
        add("table-group-by-count", COUNTS, b -> countsOut(table(b, "t")
            .groupBy((k, v) -> KeyValue.pair(first(v), v), Grouped.with(S, S))
            .count()));
        add("table-group-by-reduce", COUNTS, b -> countsOut(table(b, "t")
            .groupBy((k, v) -> KeyValue.pair(first(v), (long) v.length()), Grouped.with(S, L))
            .reduce((a, v) -> a + v, (a, v) -> a - v, kv(L, true))));
        add("table-group-by-aggregate", STRINGS, b -> toOut(table(b, "t")
            .groupBy((k, v) -> KeyValue.pair(first(v), k), Grouped.with(S, S))
            .aggregate(() -> "", (k, v, a) -> a + v, (k, v, a) -> remove(a, v), kv(S, true))));
        add("hopping-aggregate", windowed(SIZE, false), b -> windowedOut(
            grouped(b).windowedBy(TimeWindows.ofSizeAndGrace(ms(SIZE), ms(GRACE)).advanceBy(ms(ADVANCE)))
                .aggregate(() -> "", (k, v, a) -> a + v, windows(S, true)), SIZE, S));
        add("sliding-count", windowed(DIFFERENCE, true), b -> windowedOut(
            grouped(b).windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE))).count(), DIFFERENCE, L));
        add("sliding-aggregate", windowed(DIFFERENCE, false), b -> windowedOut(
            grouped(b).windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE)))
                .aggregate(() -> "", (k, v, a) -> a + v, windows(S, false)), DIFFERENCE, S));
        add("session-count", session(true), b -> sessionOut(
            grouped(b).windowedBy(SessionWindows.ofInactivityGapAndGrace(ms(GAP), ms(GRACE))).count(), L));
        add("suppress-tumbling", windowed(SIZE, true), b -> windowedOut(
            grouped(b).windowedBy(TimeWindows.ofSizeAndGrace(ms(SIZE), ms(GRACE))).count()
                .suppress(Suppressed.untilWindowCloses(BufferConfig.unbounded())), SIZE, L));
        add("suppress-session", session(true), b -> sessionOut(
            grouped(b).windowedBy(SessionWindows.ofInactivityGapAndGrace(ms(GAP), ms(GRACE))).count()
                .suppress(Suppressed.untilWindowCloses(BufferConfig.unbounded())), L));
        add("suppress-time-limit", COUNTS, b -> countsOut(grouped(b).count()
            .suppress(Suppressed.untilTimeLimit(ms(TIME_LIMIT), BufferConfig.unbounded()))));
        add("suppress-record-limit", COUNTS, b -> countsOut(grouped(b).count()
            .suppress(Suppressed.untilTimeLimit(ms(100), BufferConfig.maxRecords(2)))));
        add("emit-final-tumbling", windowed(SIZE, true), b -> windowedOut(
            grouped(b).windowedBy(TimeWindows.ofSizeAndGrace(ms(SIZE), ms(GRACE)))
                .emitStrategy(EmitStrategy.onWindowClose()).count(), SIZE, L));
        add("emit-final-sliding", windowed(DIFFERENCE, true), b -> windowedOut(
            grouped(b).windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE)))
                .emitStrategy(EmitStrategy.onWindowClose()).count(), DIFFERENCE, L));
        add("emit-final-session", session(true), b -> sessionOut(
            grouped(b).windowedBy(SessionWindows.ofInactivityGapAndGrace(ms(GAP), ms(GRACE)))
                .emitStrategy(EmitStrategy.onWindowClose()).count(), L));
        streamJoin("join-inner", JoinWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE)), "inner");
        streamJoin("join-left", JoinWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE)), "left");
        streamJoin("join-outer", JoinWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE)), "outer");
        streamJoin("join-inner-no-grace", JoinWindows.ofTimeDifferenceWithNoGrace(ms(DIFFERENCE)), "inner");
        streamJoin("join-left-no-grace", JoinWindows.ofTimeDifferenceWithNoGrace(ms(DIFFERENCE)), "left");
        streamJoin("join-left-asymmetric",
            JoinWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE)).before(ms(3)), "left");
        streamJoin("join-outer-asymmetric",
            JoinWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE)).after(ms(4)), "outer");
        add("stream-table-join", STRINGS, b -> stream(b, "l").join(table(b, "t"), Catalogue::join).to("out", Produced.with(S, S)));
        add("stream-table-left-join", STRINGS,
            b -> stream(b, "l").leftJoin(table(b, "t"), Catalogue::join).to("out", Produced.with(S, S)));
        add("table-table-join", STRINGS, b -> toOut(table(b, "t").join(table(b, "u"), Catalogue::join)));
        add("table-table-left-join", STRINGS, b -> toOut(table(b, "t").leftJoin(table(b, "u"), Catalogue::join)));
        add("table-table-outer-join", STRINGS, b -> toOut(table(b, "t").outerJoin(table(b, "u"), Catalogue::join)));
        add("fk-join", STRINGS, b -> toOut(table(b, "t").join(table(b, "u"), Catalogue::first, Catalogue::join)));
        add("fk-left-join", STRINGS, b -> toOut(table(b, "t").leftJoin(table(b, "u"), Catalogue::first, Catalogue::join)));
        add("global-join", STRINGS, b -> {
            final GlobalKTable<String, String> g = b.globalTable("g", Consumed.with(S, S));
            stream(b, "l").join(g, (k, v) -> first(v), Catalogue::join).to("out", Produced.with(S, S));
        });
        add("global-left-join", STRINGS, b -> {
            final GlobalKTable<String, String> g = b.globalTable("g", Consumed.with(S, S));
            stream(b, "l").leftJoin(g, (k, v) -> first(v), Catalogue::join).to("out", Produced.with(S, S));
        });
        add("cogroup", STRINGS, b -> toOut(stream(b, "l").groupByKey(Grouped.with(S, S))
            .<String>cogroup((k, v, a) -> a + "L" + v)
            .cogroup(stream(b, "r").groupByKey(Grouped.with(S, S)), (k, v, a) -> a + "R" + v)
            .aggregate(() -> "", kv(S, true))));
        add("repartition-count", COUNTS, b -> countsOut(stream(b, "in")
            .groupBy((k, v) -> first(v), Grouped.with(S, S))
            .count()));
        add("select-key-reduce", STRINGS, b -> toOut(stream(b, "in")
            .selectKey((k, v) -> first(v))
            .groupByKey(Grouped.with(S, S))
            .reduce((a, v) -> a + "|" + v, kv(S, false))));
        add("stateless", STRINGS, b -> stream(b, "l").merge(stream(b, "r"))
            .filter((k, v) -> v.length() > 1)
            .mapValues(v -> v.toUpperCase())
            .flatMap((k, v) -> List.of(KeyValue.pair(k, v), KeyValue.pair(first(v).toLowerCase(), k)))
            .to("out", Produced.with(S, S)));
        add("to-table", STRINGS, b -> toOut(stream(b, "in").selectKey((k, v) -> first(v)).toTable(kv(S, false))));
        add("repartition-reduce", STRINGS, b -> toOut(stream(b, "in")
            .repartition(Repartitioned.with(S, S))
            .groupByKey(Grouped.with(S, S))
            .reduce((a, v) -> a + "|" + v, kv(S, false))));
        add("process-values", STRINGS, b -> stream(b, "in").processValues(Stamp::new).to("out", Produced.with(S, S)));
        add("payload-time-tumbling", windowed(SIZE, true), b -> windowedOut(
            b.stream("in", Consumed.with(S, S).withTimestampExtractor(Catalogue::payloadTime))
                .groupByKey(Grouped.with(S, S))
                .windowedBy(TimeWindows.ofSizeAndGrace(ms(SIZE), ms(GRACE)))
                .count(windows(L, false)), SIZE, L));
        add("filtered-tumbling-count", windowed(SIZE, true), b -> windowedOut(stream(b, "in")
            .filter((k, v) -> !v.startsWith("x"))
            .groupByKey(Grouped.with(S, S))
            .windowedBy(TimeWindows.ofSizeAndGrace(ms(SIZE), ms(GRACE)))
            .count(windows(L, false)), SIZE, L));
        add("cogroup-tumbling", windowed(SIZE, false), b -> windowedOut(cogrouped(b)
            .windowedBy(TimeWindows.ofSizeAndGrace(ms(SIZE), ms(GRACE)))
            .aggregate(() -> "", windows(S, false)), SIZE, S));
        add("cogroup-sliding", windowed(DIFFERENCE, false), b -> windowedOut(cogrouped(b)
            .windowedBy(SlidingWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE)))
            .aggregate(() -> "", windows(S, true)), DIFFERENCE, S));
        add("cogroup-session", session(false), b -> sessionOut(cogrouped(b)
            .windowedBy(SessionWindows.ofInactivityGapAndGrace(ms(GAP), ms(GRACE)))
            .aggregate(() -> "", (k, a1, a2) -> a1 + a2, sessions(S, false)), S));
        add("split-chained", STRINGS, b -> stream(b, "in").split()
            .branch((k, v) -> v.length() > 2, Branched.withFunction(s -> s.mapValues(v -> v.toUpperCase())))
            .branch((k, v) -> v.startsWith("a"), Branched.withConsumer(s -> s.mapValues(v -> v + "!").to("out", Produced.with(S, S))))
            .defaultBranch()
            .values()
            .forEach(s -> s.to("out", Produced.with(S, S))));
        add("join-outer-with-key", STRINGS, b -> stream(b, "l").outerJoin(stream(b, "r"),
                (k, a, r) -> k + ":" + join(a, r),
                JoinWindows.ofTimeDifferenceAndGrace(ms(DIFFERENCE), ms(GRACE)), StreamJoined.with(S, S, S))
            .to("out", Produced.with(S, S)));
        add("versioned-table", STRINGS, b -> toOut(versionedTable(b, "t")));
        add("versioned-stream-table-join", STRINGS,
            b -> stream(b, "l").join(versionedTable(b, "t"), Catalogue::join).to("out", Produced.with(S, S)));
        add("versioned-stream-table-left-join", STRINGS,
            b -> stream(b, "l").leftJoin(versionedTable(b, "t"), Catalogue::join).to("out", Produced.with(S, S)));
        add("versioned-table-table-join", STRINGS, b -> toOut(versionedTable(b, "t").join(table(b, "u"), Catalogue::join)));
        add("versioned-stream-table-join-grace", STRINGS, b -> stream(b, "l")
            .join(versionedTable(b, "t"), Catalogue::join, Joined.with(S, S, S).withGracePeriod(ms(GRACE)))
            .to("out", Produced.with(S, S)));
        add("versioned-stream-table-left-join-grace", STRINGS, b -> stream(b, "l")
            .leftJoin(versionedTable(b, "t"), Catalogue::join, Joined.with(S, S, S).withGracePeriod(ms(GRACE)))
            .to("out", Produced.with(S, S)));
        add("table-process-values", STRINGS, b -> toOut(table(b, "t").transformValues(TableStamp::new)));
        add("table-process-values-group-by", COUNTS, b -> countsOut(table(b, "t")
            .transformValues(TableStamp::new)
            .groupBy((k, v) -> KeyValue.pair(first(v), v), Grouped.with(S, S))
            .count()));
        add("table-process-values-materialized-group-by", COUNTS, b -> countsOut(table(b, "t")
            .transformValues(TableStamp::new, Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("pv-rows")
                .withKeySerde(S).withValueSerde(S).withCachingEnabled())
            .groupBy((k, v) -> KeyValue.pair(first(v), v), Grouped.with(S, S))
            .count()));
    }

    /** Appends how many times it ran to each row; rows starting with "x" are deleted. */
    static final class TableStamp implements ValueTransformerWithKey<String, String, String> {
        private int calls;

        @Override
        public void init(final org.apache.kafka.streams.processor.ProcessorContext context) {}

        @Override
        public String transform(final String key, final String value) {
            calls++;
            if (value == null || value.startsWith("x")) {
                return null;
            }
            return value + "#" + calls;
        }

        @Override
        public void close() {}
    }

    /** Two streams cogrouped: "l" values appended after "L", "r" values after "R". */
    private static CogroupedKStream<String, String> cogrouped(final StreamsBuilder b) {
        return stream(b, "l").groupByKey(Grouped.with(S, S))
            .<String>cogroup((k, v, a) -> a + "L" + v)
            .cogroup(stream(b, "r").groupByKey(Grouped.with(S, S)), (k, v, a) -> a + "R" + v);
    }

    /** Event time from the record and its value: values starting with "x" have none (dropped). */
    static long payloadTime(final ConsumerRecord<Object, Object> record, final long partitionTime) {
        final String value = (String) record.value();
        return value.startsWith("x") ? -1 : record.timestamp() + value.length();
    }

    /** Appends the record's timestamp and input offset to its value. */
    static final class Stamp implements FixedKeyProcessor<String, String, String> {
        private FixedKeyProcessorContext<String, String> context;

        @Override
        public void init(final FixedKeyProcessorContext<String, String> context) {
            this.context = context;
        }

        @Override
        public void process(final FixedKeyRecord<String, String> record) {
            final long offset = context.recordMetadata().map(m -> m.offset()).orElse(-1L);
            context.forward(record.withValue(record.value() + "@" + record.timestamp() + "#" + offset));
        }
    }

    private Catalogue() {}
}
