#!/usr/bin/env python3
"""Greedy text of a GGUF llama from the float64 NumPy reference (gguf_llama_numpy.py), to judge which
side of a near-tie the engine's CPU and GPU paths are on. Needs the `gguf` package (pip install gguf).

usage: gguf_greedy.py MODEL.gguf N ID [ID ...]    (prompt token ids, e.g. from `ignis tokenize`)
Prints the N generated tokens as text (byte-level BPE pieces joined, Ġ -> space, Ċ -> newline)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf import GGUFReader  # noqa: E402
from gguf_llama_numpy import GGUFLlama  # noqa: E402


def main(argv):
    if len(argv) < 4:
        print(__doc__)
        return 2
    path, n, ids = argv[1], int(argv[2]), [int(t) for t in argv[3:]]
    f = GGUFReader(path).fields["tokenizer.ggml.tokens"]
    pieces = [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]
    _, out = GGUFLlama(path).greedy(ids, n)
    sys.stdout.write("".join(pieces[i] for i in out).replace("Ġ", " ").replace("Ċ", "\n") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
