"""Prints "TPS p50_ms p99_ms" for one pgbench run: TPS as given, the
percentiles from pgbench's per-transaction log (-l) read on stdin, whose third
column is the transaction's latency in microseconds.

    cat pgbench-log.* | python3 load/latency.py 10283.5
"""

import sys


def main():
    lat = sorted(int(line.split()[2]) for line in sys.stdin if line.strip())
    if not lat:
        sys.exit("no transactions in the pgbench log")

    def pick(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000

    print(sys.argv[1], f"{pick(0.50):.2f}", f"{pick(0.99):.2f}")


if __name__ == "__main__":
    main()
