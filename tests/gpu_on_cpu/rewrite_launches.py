"""Rewrite CUDA launches ``kernel<T><<<grid, block, shmem, stream>>>(args)`` as HIP's
``hipLaunchKernelGGL((kernel<T>), dim3(grid), dim3(block), shmem, stream, args)`` so that a .cu
file compiles as C++ against HIP-CPU.

    python rewrite_launches.py IN.cu OUT.cpp     # prints the number of launches rewritten

Fails (exit 1) on a launch it cannot parse and on a file without launches, so that a new launch
form is noticed rather than left out.
"""

import re
import sys


def _match_back(text: str, end: int, open_ch: str, close_ch: str) -> int:
    """Index of the bracket opening the one that closes just before ``end``."""
    depth = 0
    for i in range(end - 1, -1, -1):
        if text[i] == close_ch:
            depth += 1
        elif text[i] == open_ch:
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced brackets before a launch")


def _match_forward(text: str, start: int) -> int:
    """Index just past the parenthesis closing the one at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError("unbalanced parentheses in a launch")


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return parts


def rewrite(source: str) -> tuple[str, int]:
    out, pos, count = [], 0, 0
    for launch in re.finditer(r"<<<", source):
        start = launch.start()
        if start < pos:
            continue
        # The kernel name, with its template arguments if any, ends just before <<< (whitespace aside).
        name_end = start
        while source[name_end - 1].isspace():
            name_end -= 1
        name_start = name_end
        if source[name_end - 1] == ">":
            name_start = _match_back(source, name_end, "<", ">")
        name_start = re.search(r"[A-Za-z_][\w:]*\s*$", source[:name_start]).start()
        config_end = source.index(">>>", start)
        config = _split_top_level(source[start + 3 : config_end])
        if len(config) == 2:
            config += ["0", "nullptr"]
        elif len(config) == 3:
            config.append("nullptr")
        if len(config) != 4:
            raise ValueError(f"cannot parse launch configuration {config}")
        args_open = config_end + 3
        while source[args_open].isspace():
            args_open += 1
        if source[args_open] != "(":
            raise ValueError("a launch must be followed by its argument list")
        args_close = _match_forward(source, args_open)
        args = source[args_open + 1 : args_close - 1].strip()
        kernel = " ".join(source[name_start:name_end].split())
        grid, block, shmem, stream = config
        call = f"hipLaunchKernelGGL(({kernel}), dim3({grid}), dim3({block}), {shmem}, {stream}"
        out.append(source[pos:name_start])
        out.append(call + (f", {args})" if args else ")"))
        pos = args_close
        count += 1
    out.append(source[pos:])
    return "".join(out), count


def main() -> int:
    src, dst = sys.argv[1], sys.argv[2]
    text, count = rewrite(open(src).read())
    if count == 0:
        print(f"{src}: no <<<...>>> launch found", file=sys.stderr)
        return 1
    with open(dst, "w") as f:
        f.write(f'#line 1 "{src}"\n{text}')
    print(f"{src}: {count} launches rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
