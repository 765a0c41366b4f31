"""The terminal colour view of a token sequence: each token coloured (ANSI) by the
teacher's probability of it, or tagged `[token|p]` without colours."""
from __future__ import annotations


def colour_view(tokens: list[str], probs: list[float | None], ansi: bool = True) -> str:
    """Tokens coloured by the teacher's probability of them (green ≥ .9 … red < .1)."""
    out = []
    for text, p in zip(tokens, probs):
        if p is None:
            code, tag = "35", "?"  # not stored: below nucleus and not sampled
        elif p >= 0.9:
            code, tag = "32", f"{p:.2f}"
        elif p >= 0.5:
            code, tag = "36", f"{p:.2f}"
        elif p >= 0.1:
            code, tag = "33", f"{p:.2f}"
        else:
            code, tag = "31", f"{p:.2f}"
        out.append(f"\x1b[{code}m{text}\x1b[0m" if ansi else f"[{text}|{tag}]")
    return "".join(out)
