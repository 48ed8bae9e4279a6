#!/usr/bin/env python3
"""Writes the five worst-case JSON documents of the parser benchmark (about 1 MiB each) to DIR.

keys.json     one object of 100,000 members with distinct 5-character keys
escapes.json  an array of 100,000 short strings, each with two escapes (half of them \\u escapes)
deep.json     an array of items nested 63 levels deeper (64 in all: the parser's default limit),
              objects and arrays in turn
deep-arrays.json  the same with arrays only: about 2 bytes per container, the most a MiB can hold
numbers.json  an array of ~10,000 numbers of ~100 characters each
"""
import itertools, json, os, string, sys

MIB = 1 << 20


def keys():
    alphabet = string.ascii_letters + string.digits
    names = ("".join(t) for t in itertools.product(alphabet, repeat=5))
    return "{" + ",".join(f'"{k}":{i % 10}' for i, k in zip(range(100_000), names)) + "}"


def escapes():
    items = ['"\\u00e9\\n"' if i % 2 == 0 else '"\\t\\""' for i in range(100_000)]
    return "[" + ",".join(items) + "]"


def deep():
    # 63 levels inside the top-level array: {"a":[{"a":[ … 0 … ]}]}
    opens, closes = [], []
    for level in range(63):
        if level % 2 == 0:
            opens.append('{"a":')
            closes.append("}")
        else:
            opens.append("[")
            closes.append("]")
    item = "".join(opens) + "0" + "".join(reversed(closes))
    n = (MIB - 2) // (len(item) + 1)
    return "[" + ",".join([item] * n) + "]"


def deep_arrays():
    item = "[" * 63 + "0" + "]" * 63
    n = (MIB - 2) // (len(item) + 1)
    return "[" + ",".join([item] * n) + "]"


def numbers():
    out, size, k = [], 2, 0
    while True:
        mantissa = str(10**59 + k * 7919).rjust(60, "9")
        item = f"-{mantissa}.{str(k * 104729).rjust(30, '0')}e-{k % 300}"
        if size + len(item) + 1 > MIB:
            break
        out.append(item)
        size += len(item) + 1
        k += 1
    return "[" + ",".join(out) + "]"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "bench/out/json"
    os.makedirs(out, exist_ok=True)
    for name, make in [("keys", keys), ("escapes", escapes), ("deep", deep), ("deep-arrays", deep_arrays), ("numbers", numbers)]:
        text = make()
        json.loads(text)  # valid JSON, or this fails here
        assert len(text.encode()) <= MIB, name
        with open(os.path.join(out, name + ".json"), "w") as f:
            f.write(text)
        print(f"{name}.json {len(text.encode())} bytes", file=sys.stderr)


main()
