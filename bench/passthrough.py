"""The ceiling: consume and produce the same bytes with confluent-kafka, nothing else."""

from __future__ import annotations

from common import clients, parse_args, produce, stop_on_sigterm


def main() -> None:
    args = parse_args()
    stopped = stop_on_sigterm()
    consumer, producer = clients(args)
    while not stopped():
        for msg in consumer.consume(500, 0.01):  # a 10 ms window: a batch per call
            if msg.error():
                continue
            produce(producer, args.output, msg.value(), msg.key(), headers=msg.headers())
        producer.poll(0)
    producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
