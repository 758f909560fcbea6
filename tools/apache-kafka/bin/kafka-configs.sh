#!/usr/bin/env bash
# Kafka's kafka-configs, from the jars of tools/apache-kafka/pom.xml.
exec "$(dirname "${BASH_SOURCE[0]}")/../kafka.sh" run kafka.admin.ConfigCommand "$@"
