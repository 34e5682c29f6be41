"""Prints the functions of one binary that callgrind saw run, hottest (self cost) first.

    python3 callgrind-symbols.py BINARY CALLGRIND_FILE...

The names are the linker's (mangled), as `--symbol-ordering-file` wants them.
"""

import collections
import re
import sys


def main() -> None:
    binary, files = sys.argv[1], sys.argv[2:]
    self_cost: collections.Counter[str] = collections.Counter()
    for path in files:
        obj = fn = None
        skip_call_cost = False
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("ob="):
                    obj = line[3:].strip()
                elif line.startswith("fn="):
                    # `'2` marks a recursion level, not another symbol.
                    fn = re.sub(r"'\d+$", "", line[3:].strip())
                    if obj == binary:
                        self_cost[fn] += 0
                elif line.startswith("calls="):
                    skip_call_cost = True
                elif line[:1].isdigit() or line[:1] in "+-*":
                    if skip_call_cost:
                        skip_call_cost = False
                    elif obj == binary and fn is not None:
                        fields = line.split()
                        if len(fields) > 1:
                            self_cost[fn] += int(fields[1])
    for name, _ in sorted(self_cost.items(), key=lambda item: (-item[1], item[0])):
        # Addresses and callgrind's own entries such as "(below main)" name no symbol.
        if not name.startswith(("0x", "(")):
            print(name)


if __name__ == "__main__":
    main()
