#!/usr/bin/env bash
# Kafka's kafka-producer-perf-test, from the jars of tools/apache-kafka/pom.xml.
exec "$(dirname "${BASH_SOURCE[0]}")/../kafka.sh" run org.apache.kafka.tools.ProducerPerformance "$@"
