#!/usr/bin/env python3
"""Fails when the rooms of core/ include each other in a circle.

A room is a header and the .c files that implement it: a .c file belongs to
the room of every header declaring a function it defines (so txn.c, the
steps declared in txn_state.h, and txn_events.c, the set-up declared in
txn.h, form one room). Room A depends on room B when a file of A includes
B's header. The dependencies must form no cycle, so that every room can be
read knowing only the rooms below it. Prints the rooms bottom to top.

usage: core_includes.py CORE_DIR
"""
import os
import re
import sys

core = sys.argv[1]
files = sorted(f for f in os.listdir(core) if f.endswith(('.c', '.h')))
text = {f: open(os.path.join(core, f), encoding='utf-8').read() for f in files}
stem = lambda f: f.rsplit('.', 1)[0]

parent = {stem(f): stem(f) for f in files}


def find(x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


declared = {}
for h in (f for f in files if f.endswith('.h')):
    declared[h] = set(re.findall(r'^[^\s*/][^;{}()\n]*?\b(fc_\w+)\(', text[h], re.M))
for c in (f for f in files if f.endswith('.c')):
    defined = set(re.findall(r'^(?!static)[^\s*/#][^;{}()\n]*?\b(fc_\w+)\([^;\n]*$', text[c], re.M))
    for h, names in declared.items():
        if names & defined:
            parent[find(stem(c))] = find(stem(h))

deps = {}
for f in files:
    for inc in re.findall(r'^#include "([^"]+)"', text[f], re.M):
        if inc not in text:
            continue
        a, b = find(stem(f)), find(stem(inc))
        if a != b:
            deps.setdefault(a, set()).add(b)

rooms = sorted({find(stem(f)) for f in files})
members = {}
for f in files:
    members.setdefault(find(stem(f)), []).append(f)
# A room is named after its shortest file name (txn, not txn_state).
label = {r: min((stem(f) for f in members[r]), key=lambda n: (len(n), n)) for r in rooms}
order, state = [], {}


def visit(r, path):
    if state.get(r) == 'done':
        return
    if state.get(r) == 'open':
        cycle = path[path.index(r):] + [r]
        sys.exit('include circle in core/: ' + ' -> '.join(label[x] for x in cycle))
    state[r] = 'open'
    for d in sorted(deps.get(r, ())):
        visit(d, path + [r])
    state[r] = 'done'
    order.append(r)


for r in rooms:
    visit(r, [])
for r in order:
    print('%-14s %s' % (label[r], ' '.join(members[r])))
print('no include circle among %d rooms' % len(order))
