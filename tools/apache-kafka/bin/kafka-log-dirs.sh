#!/usr/bin/env bash
# Kafka's kafka-log-dirs, from the jars of tools/apache-kafka/pom.xml.
exec "$(dirname "${BASH_SOURCE[0]}")/../kafka.sh" run org.apache.kafka.tools.LogDirsCommand "$@"
