#!/bin/sh
#
# embed.sh PREFIX OUT.c FILE.lua...: the Lua scripts as C strings, one
# "const char PREFIX_<name>[]" per file, for nginx's configure (the module)
# and the Makefile (the workers). Plain sh and sed: a user's nginx build
# needs nothing more.

set -eu

prefix=$1
out=$2
shift 2

tmp=$out.tmp

{
    echo "/* made by embed.sh from the .lua files: edit those, not this */"
    echo

    for f in "$@"; do
        name=$(basename "$f" .lua)
        echo "const char ${prefix}_${name}[] ="
        sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' \
            "$f"
        echo "    ;"
        echo
    done
} > "$tmp"

mv "$tmp" "$out"
