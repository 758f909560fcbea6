#!/usr/bin/env bash
# Kafka Connect's connect-distributed: a distributed worker (ConnectDistributed) from the jars of
# tools/apache-kafka/connect/pom.xml, with the worker config given (see connect/worker.properties).
exec "$(dirname "${BASH_SOURCE[0]}")/../kafka.sh" connect "$@"
