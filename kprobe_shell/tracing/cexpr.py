"""C expressions as gdb's `print` reads them, evaluated over guest memory and DWARF.

    file->f_dentry->d_iname    *(long *)$rsp    &init_task    buf[2]    (char)$rdi
    count * 2 + 1              $rax    $1    $$    $$2    sizeof(struct file)

Names come from a context (the selected frame: its parameters and locals, then the
globals); registers and value history too.  Nothing is written: an assignment is refused,
so `print` never changes what the guest computes.
"""
from __future__ import annotations

import re

from .cvalue import (BUILTIN_TYPES, CHAR, INT, LONG, UINT, ULONG, VOID, CType, EvalError, Value,
                     member_value, pointer_to)

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>(?:0[xX][0-9a-fA-F]+|[0-9]+)[uUlL]*)
    | (?P<chr>'(?:\\.|[^'\\])')
    | (?P<dollar>\$\$?[A-Za-z_0-9]*)
    | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
    | (?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>()\[\].,?:=])
    )""", re.X)

_BINARY = {"||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6, "<": 7, ">": 7, "<=": 7, ">=": 7,
           "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10}
_TYPE_WORDS = {"struct", "union", "enum", "unsigned", "signed", "char", "short", "int", "long", "void", "_Bool"}
#: Parentheses and unary operators nested deeper than this are refused (C compilers
#: allow 63 levels of parentheses; Python's stack allows the parser a few hundred).
MAX_NESTING = 100
_CHAR_ESCAPES = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, "'": 39, "a": 7, "b": 8, "f": 12, "v": 11}


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            rest = text[pos:].strip()
            raise EvalError(f"Invalid character '{rest[0]}' in expression.")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class Evaluator:
    """One expression over a context (see shell/frames.py's FrameContext)."""

    def __init__(self, context, text: str):
        self.ctx = context
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0

    def evaluate(self) -> Value:
        if not self.tokens:
            raise EvalError("Argument required (expression to compute).")
        if self.tokens[-1][1] in _BINARY or self.tokens[-1][1] in ("->", ".", "~", "!"):
            raise EvalError(f"A syntax error in expression, near `'. ('{self.text.strip()}' ends with an operator)")
        v = self._expr()
        if self.pos < len(self.tokens):
            kind, tok = self.tokens[self.pos]
            if tok == "=":
                raise EvalError("assignments are not supported: print only reads the guest")
            raise EvalError(f"A syntax error in expression, near `{self._rest()}'.")
        return v

    # ------------------------------------------------------------------ tokens
    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, tok: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise EvalError(f"A syntax error in expression, near `'.")
        got = self.tokens[self.pos]
        if tok is not None and got[1] != tok:
            raise EvalError(f"A syntax error in expression, near `{self._rest()}'.")
        self.pos += 1
        return got

    def _rest(self) -> str:
        return " ".join(t for _k, t in self.tokens[self.pos:])

    # ------------------------------------------------------------------ grammar
    def _expr(self) -> Value:
        cond = self._binary(1)
        if self._peek() != "?":
            return cond
        self._take("?")
        yes = self._expr()
        self._take(":")
        no = self._expr()
        return yes if _truth(cond) else no

    def _binary(self, level: int) -> Value:
        left = self._unary()
        while True:
            op = self._peek()
            prec = _BINARY.get(op or "")
            if prec is None or prec < level:
                return left
            self._take()
            right = self._binary(prec + 1)
            left = binary(op, left, right)

    def _unary(self) -> Value:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise EvalError(f"expression nested too deeply (more than {MAX_NESTING} levels)")
            return self._unary_inner()
        finally:
            self.depth -= 1

    def _unary_inner(self) -> Value:
        tok = self._peek()
        if tok in ("-", "+", "~", "!"):
            self._take()
            return unary(tok, self._unary())
        if tok == "*":
            self._take()
            return self.deref(self._unary())
        if tok == "&":
            self._take()
            return address_of(self._unary())
        if tok == "sizeof":
            self._take()
            return Value.of_int(ULONG, self._sizeof())
        if tok == "(" and self._is_type_at(self.pos + 1):
            self._take("(")
            t = self._type_name()
            self._take(")")
            return cast(self._unary(), t)
        return self._postfix(self._primary())

    def _sizeof(self) -> int:
        if self._peek() == "(" and self._is_type_at(self.pos + 1):
            self._take("(")
            t = self._type_name()
            self._take(")")
            return t.size
        return self._unary().type.size

    def _postfix(self, v: Value) -> Value:
        while True:
            tok = self._peek()
            if tok == "[":
                self._take()
                index = self._expr()
                self._take("]")
                v = self.deref(binary("+", v, index))
            elif tok in (".", "->"):
                self._take()
                kind, name = self._take()
                if kind != "name":
                    raise EvalError(f"A syntax error in expression, near `{name}'.")
                if tok == "->" or v.type.kind == "ptr":  # gdb accepts p.member on a pointer too
                    if v.type.kind != "ptr":
                        raise EvalError(f"The -> operator must be applied to a pointer, not {v.type.spell()}.")
                    v = self.deref(v)
                v = member_value(v, name)
            else:
                return v

    def _primary(self) -> Value:
        kind, tok = self._take()
        if kind == "num":
            return number(tok)
        if kind == "chr":
            return Value.of_int(CHAR, _char_value(tok))
        if kind == "dollar":
            return self.ctx.dollar(tok)
        if kind == "name":
            return self.ctx.variable(tok)
        if tok == "(":
            v = self._expr()
            self._take(")")
            return v
        raise EvalError(f"A syntax error in expression, near `{tok} {self._rest()}'.".replace(" '", "'"))

    # ------------------------------------------------------------------ types
    def _is_type_at(self, i: int) -> bool:
        if i >= len(self.tokens):
            return False
        kind, tok = self.tokens[i]
        if kind != "name":
            return False
        return tok in _TYPE_WORDS or (self.ctx.type_named(tok) is not None
                                      and not self.ctx.has_variable(tok))

    def _type_name(self) -> CType:
        words = []
        while self._peek() is not None and self.tokens[self.pos][0] == "name":
            words.append(self._take()[1])
            if words[0] in ("struct", "union", "enum") and len(words) == 2:
                break
        spelled = " ".join(words)
        t = self.ctx.type_named(spelled) or BUILTIN_TYPES.get(spelled)
        if t is None:
            raise EvalError(f"No symbol \"{spelled}\" in current context.")
        while self._peek() == "*":
            self._take()
            t = pointer_to(t)
        return t

    # ------------------------------------------------------------------ memory
    def deref(self, v: Value) -> Value:
        if v.type.kind == "func":
            return v  # C: *f is the function f
        if v.type.kind == "array":
            v = decay(v)
        if v.type.kind != "ptr" or v.type.target is None or v.type.target.kind == "void":
            raise EvalError("Attempt to take contents of a non-pointer value.")
        target = v.type.target
        addr = v.as_int() & 0xFFFFFFFFFFFFFFFF
        if target.kind == "func":
            return Value(target, address=addr)
        return Value(target, self.ctx.read(addr, target.size), addr)


# ---------------------------------------------------------------------- operators
def number(tok: str) -> Value:
    """A C integer constant: int, unsigned int, long or unsigned long, by its value and
    its suffixes (U, L), as C types them."""
    digits = tok.rstrip("uUlL")
    suffix = tok[len(digits):].lower()
    if len(digits.lstrip("0xX")) > 22:  # past 64 bits in any base (and past int()'s digit limit)
        raise EvalError("numeric constant too large (as gdb says: at most 64 bits)")
    n = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8) if len(digits) > 1 and digits[0] == "0" \
        else int(digits)
    if n >= 1 << 64:
        raise EvalError("numeric constant too large (as gdb says: at most 64 bits)")
    unsigned = "u" in suffix
    if "l" not in suffix:
        if n < 1 << 31 and not unsigned:
            return Value.of_int(INT, n)
        if n < 1 << 32 and (unsigned or digits[:2].lower() == "0x"):
            return Value.of_int(UINT, n)
    return Value.of_int(ULONG if unsigned or n >= 1 << 63 else LONG, n)


def _char_value(tok: str) -> int:
    body = tok[1:-1]
    if body.startswith("\\"):
        return _CHAR_ESCAPES.get(body[1], ord(body[1]))
    return ord(body)


def _truth(v: Value) -> bool:
    return v.as_int() != 0


def decay(v: Value) -> Value:
    """An array in an expression is a pointer to its first element."""
    if v.address is None:
        raise EvalError("Attempt to take address of value not located in memory.")
    return Value.of_int(pointer_to(v.type.target or VOID), v.address)


def address_of(v: Value) -> Value:
    if v.type.kind == "func" and v.address is not None:
        return Value.of_int(pointer_to(v.type), v.address)
    if v.address is None:
        if v.register:
            raise EvalError("Attempt to take address of value not located in memory.")
        raise EvalError("Attempt to take address of value not located in memory.")
    return Value.of_int(pointer_to(v.type), v.address)


def cast(v: Value, t: CType) -> Value:
    if t.kind in ("struct", "union", "array"):
        if v.type.kind == t.kind and v.type.name == t.name:
            return v
        raise EvalError(f"Invalid cast.")
    if t.kind == "void":
        return Value(VOID)
    if v.type.kind == "array":
        v = decay(v)
    return Value.of_int(t, v.as_int())


def _arith_type(a: CType, b: CType) -> CType:
    """C's usual arithmetic conversions, for the integer types gdb meets here."""
    size = max(a.size, b.size, 4)
    unsigned = any(t.size == size and not t.signed for t in (a, b))
    if size > 4:
        return ULONG if unsigned else LONG
    return UINT if unsigned else INT


def unary(op: str, v: Value) -> Value:
    if op == "!":
        return Value.of_int(INT, int(not _truth(v)))
    n = v.as_int()
    t = _arith_type(v.type, INT) if v.type.kind != "ptr" else ULONG
    return Value.of_int(t, {"-": -n, "+": n, "~": ~n}[op])


def binary(op: str, a: Value, b: Value) -> Value:
    if a.type.kind == "array":
        a = decay(a)
    if b.type.kind == "array":
        b = decay(b)
    if op in ("&&", "||"):
        result = (_truth(a) and _truth(b)) if op == "&&" else (_truth(a) or _truth(b))
        return Value.of_int(INT, int(result))
    x, y = a.as_int(), b.as_int()
    if a.type.kind == "ptr" or b.type.kind == "ptr":
        pointer = _pointer_arith(op, a, b, x, y)
        if pointer is not None:
            return pointer
    t = _arith_type(a.type, b.type)
    if not t.signed:
        mask = (1 << (8 * t.size)) - 1
        x, y = x & mask, y & mask
    if op in ("/", "%") and y == 0:
        raise EvalError("Division by zero")
    compare = {"<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y, "==": x == y, "!=": x != y}
    if op in compare:
        return Value.of_int(INT, int(compare[op]))
    if op in ("<<", ">>"):
        return Value.of_int(t, x << y if op == "<<" else x >> y)
    result = {"+": x + y, "-": x - y, "*": x * y, "&": x & y, "|": x | y, "^": x ^ y,
              "/": int(x / y) if op == "/" else 0, "%": x - int(x / y) * y if op == "%" else 0}[op]
    return Value.of_int(t, result)


def _pointer_arith(op: str, a: Value, b: Value, x: int, y: int) -> Value | None:
    """p + n, n + p, p - n (scaled by the pointee's size) and p - q (in elements)."""
    def scale(p: Value) -> int:
        target = p.type.target
        return max(1, target.size) if target is not None and target.kind not in ("void", "func") else 1

    mask = 0xFFFFFFFFFFFFFFFF
    if op == "+" and a.type.kind == "ptr" and b.type.kind != "ptr":
        return Value.of_int(a.type, (x & mask) + y * scale(a))
    if op == "+" and b.type.kind == "ptr" and a.type.kind != "ptr":
        return Value.of_int(b.type, (y & mask) + x * scale(b))
    if op == "-" and a.type.kind == "ptr" and b.type.kind != "ptr":
        return Value.of_int(a.type, (x & mask) - y * scale(a))
    if op == "-" and a.type.kind == "ptr" and b.type.kind == "ptr":
        return Value.of_int(LONG, ((x & mask) - (y & mask)) // scale(a))
    if op in ("<", ">", "<=", ">=", "==", "!="):
        return None
    raise EvalError(f"Argument to arithmetic operation not a number or boolean.")


def evaluate(context, text: str) -> Value:
    return Evaluator(context, text).evaluate()
