#!/usr/bin/env bash
# Kafka's kafka-console-consumer, from the jars of tools/apache-kafka/pom.xml.
exec "$(dirname "${BASH_SOURCE[0]}")/../kafka.sh" run org.apache.kafka.tools.consumer.ConsoleConsumer "$@"
