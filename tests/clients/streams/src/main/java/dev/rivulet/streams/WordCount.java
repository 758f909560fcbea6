package dev.rivulet.streams;

import java.time.Duration;
import java.util.Arrays;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * One instance of the word count application of Kafka Streams' quickstart: lines from INPUT
 * (String values), split into lower-case words, counted per word in a state store "counts"
 * (repartitioned by word, changelogged), every new count written to OUTPUT (String word, Long
 * count). Start several with the same APPLICATION_ID to share the work.
 *
 * <p>Usage: {@code WordCount BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR}; system properties
 * {@code rivulet.guarantee} ({@code at_least_once}, the default, or {@code exactly_once_v2}) and
 * {@code rivulet.replication} (replication factor of the internal topics, default 3).
 *
 * <p>Prints {@code STATE <new> <old>} on every state change (the harness waits for
 * {@code STATE RUNNING}); runs until SIGTERM (closes in the shutdown hook, prints
 * {@code STATE NOT_RUNNING}; the JVM exits 143) or until the application fails (exit 1).
 */
public final class WordCount {
    private WordCount() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length != 5) {
            System.err.println("usage: WordCount BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
                System.getProperty("rivulet.guarantee", StreamsConfig.AT_LEAST_ONCE));
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, Integer.getInteger("rivulet.replication", 3));
        // Commit (and flush the record cache to OUTPUT) twice a second instead of every 30 s.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 500);
        // Purge consumed repartition records (DeleteRecords) every second instead of every 30 s.
        props.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 1000);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(args[2], Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\W+")))
                .filter((key, word) -> !word.isEmpty())
                .groupBy((key, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
                .count(Materialized.as("counts"))
                .toStream()
                .to(args[3], Produced.with(Serdes.String(), Serdes.Long()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch stopped = new CountDownLatch(1);
        AtomicInteger exitCode = new AtomicInteger(0);
        streams.setStateListener((now, before) -> {
            System.out.println("STATE " + now + " " + before);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR) {
                exitCode.set(1);
            }
            if (now == KafkaStreams.State.NOT_RUNNING || now == KafkaStreams.State.ERROR) {
                stopped.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("uncaught exception in a stream thread: " + e);
            e.printStackTrace();
            exitCode.set(1);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            stopped.countDown();
        }));
        streams.start();
        stopped.await();
        streams.close(Duration.ofSeconds(30));
        System.exit(exitCode.get());
    }
}
