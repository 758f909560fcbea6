package dev.rivulet.clients;

import java.util.Arrays;
import java.util.Objects;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * The Java reference client (kafka-clients) against a Rivulet node, one scenario per subcommand.
 *
 * <pre>
 *   java -cp ... dev.rivulet.clients.Main SCENARIO BOOTSTRAP NAME_PREFIX
 * </pre>
 *
 * Each scenario creates its own topics and groups under NAME_PREFIX, checks everything the client
 * observes, prints one "step:" line per stage (so a failure shows how far it got) and ends with
 * "OK SCENARIO" and exit status 0. A failed check prints "FAIL SCENARIO: what" and exits 1; an
 * unexpected exception exits 2. tests/java_clients.rs runs each scenario as its own test.
 */
public final class Main {
    /** Longest any single client call or polled condition may take. */
    static final long TIMEOUT_MS = 30_000;

    /** Replication factor of the topics the scenarios create (-Drivulet.replication=3 on a cluster). */
    static final short REPLICATION = Short.parseShort(System.getProperty("rivulet.replication", "1"));

    private Main() {}

    /** A check that did not hold: the scenario fails with this message. */
    static final class CheckFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CheckFailed(String message) {
            super(message);
        }
    }

    static void check(boolean condition, Supplier<String> message) {
        if (!condition) {
            throw new CheckFailed(message.get());
        }
    }

    static void checkEq(Object expected, Object actual, String what) {
        boolean same = expected instanceof byte[] e && actual instanceof byte[] a
                ? Arrays.equals(e, a)
                : Objects.equals(expected, actual);
        if (!same) {
            throw new CheckFailed(what + ": expected " + show(expected) + " but got " + show(actual));
        }
    }

    static String show(Object o) {
        return o instanceof byte[] b ? "bytes" + Arrays.toString(b) : String.valueOf(o);
    }

    /** Repeats {@code step} until {@code done} holds, failing with {@code what} after TIMEOUT_MS. */
    static void pollUntil(String what, Runnable step, BooleanSupplier done, Supplier<String> state) {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS);
        while (!done.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new CheckFailed("timed out after " + TIMEOUT_MS + " ms waiting until " + what
                        + "; state: " + state.get());
            }
            step.run();
        }
    }

    static void step(String what) {
        System.out.println("step: " + what);
        System.out.flush();
    }

    /** Settings every client gets: bounded waits, so a stuck call fails the scenario in time. */
    static Properties common(String bootstrap, String clientId) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", clientId);
        p.put("request.timeout.ms", "15000");
        p.put("default.api.timeout.ms", String.valueOf(TIMEOUT_MS));
        return p;
    }

    public static void main(String[] args) {
        if (args.length != 3) {
            System.err.println("usage: Main SCENARIO BOOTSTRAP NAME_PREFIX\n"
                    + "scenarios: producer, group-classic, group-consumer, group-classic-static-coop, assign-classic, "
                    + "assign-consumer, pattern-classic, pattern-consumer, admin, produce-through-failover, "
                    + "group-through-coordinator-kill, differential (-Drivulet.out=FILE)");
            System.exit(64);
        }
        String scenario = args[0];
        String bootstrap = args[1];
        String prefix = args[2];
        long start = System.nanoTime();
        int status;
        try {
            switch (scenario) {
                case "producer" -> ProducerScenario.run(bootstrap, prefix);
                case "group-classic" -> GroupScenarios.subscribe(bootstrap, prefix, "classic");
                case "group-consumer" -> GroupScenarios.subscribe(bootstrap, prefix, "consumer");
                case "group-classic-static-coop" -> GroupScenarios.subscribeStaticCooperative(bootstrap, prefix);
                case "assign-classic" -> GroupScenarios.assign(bootstrap, prefix, "classic");
                case "assign-consumer" -> GroupScenarios.assign(bootstrap, prefix, "consumer");
                case "pattern-classic" -> GroupScenarios.pattern(bootstrap, prefix, "classic");
                case "pattern-consumer" -> GroupScenarios.pattern(bootstrap, prefix, "consumer");
                case "admin" -> AdminScenario.run(bootstrap, prefix);
                case "produce-through-failover" -> FailoverScenario.run(bootstrap, prefix);
                case "group-through-coordinator-kill" -> GroupFailoverScenario.run(bootstrap, prefix);
                case "differential" -> Differential.run(bootstrap, prefix);
                default -> throw new CheckFailed("unknown scenario " + scenario);
            }
            System.out.printf("OK %s (%d ms)%n", scenario,
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
            status = 0;
        } catch (CheckFailed e) {
            System.out.println("FAIL " + scenario + ": " + e.getMessage());
            e.printStackTrace(System.out);
            status = 1;
        } catch (Throwable e) {
            System.out.println("FAIL " + scenario + ": unexpected " + e);
            e.printStackTrace(System.out);
            status = 2;
        }
        System.out.flush();
        // Every client is closed by now; exit rather than wait on any thread a failure left behind.
        System.exit(status);
    }
}
