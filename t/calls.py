#!/usr/bin/env python3
"""The calls between the files of a C program, from its object files.

    t/calls.py [--quiet] NAME OBJECT.o...

For each object file, nm tells the symbols it defines and the ones it
needs; a need met by another of the files is an edge from the needing file
to the defining one. Prints every edge with the symbols behind it, then the
circles (strongly connected groups of more than one file, or a file that
reaches itself through others), and exits 1 if there is any.

The nginx module descriptor (ngx_chat_module) is left out: every file of an
nginx module names it to reach its configuration, as nginx's own modules
do, and it is data, not a call.
"""

import os
import subprocess
import sys

IGNORED = {"ngx_chat_module"}


def symbols(path):
    """(defined, undefined) global symbols of one object file."""
    out = subprocess.run(["nm", "-P", path], check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if name in IGNORED:
            continue
        if kind == "U":
            undefined.add(name)
        elif kind in "TDRBGS":       # global text, data, rodata, bss
            defined.add(name)
    return defined, undefined


def strongly_connected(nodes, edges):
    """Tarjan's algorithm: the groups of nodes that reach each other."""
    index, low, stack, on, groups = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            groups.append(sorted(group))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return groups


def main(argv):
    quiet = False
    if argv and argv[0] == "--quiet":
        quiet = True
        argv = argv[1:]
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    name, objects = argv[0], argv[1:]

    owner, needs = {}, {}
    for path in objects:
        f = os.path.splitext(os.path.basename(path))[0]
        defined, undefined = symbols(path)
        for s in defined:
            owner[s] = f
        needs[f] = undefined

    edges = {}
    for f, undefined in needs.items():
        for s in undefined:
            g = owner.get(s)
            if g and g != f:
                edges.setdefault(f, {}).setdefault(g, []).append(s)

    if not quiet:
        print("%s: calls between %d files" % (name, len(needs)))
        for f in sorted(edges):
            for g in sorted(edges[f]):
                print("  %-26s -> %-26s %s" % (f, g,
                                               ", ".join(sorted(edges[f][g]))))

    circles = [g for g in strongly_connected(needs, edges) if len(g) > 1]
    for group in circles:
        print("%s: circle between %s" % (name, ", ".join(group)))
        for f in group:
            for g in sorted(edges.get(f, {})):
                if g in group:
                    print("  %s -> %s: %s" % (f, g,
                                              ", ".join(sorted(edges[f][g]))))
    if circles:
        return 1
    print("%s: no circles between its %d files" % (name, len(needs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
