"""The tokenizer of the .config language, in pure Python.

This is the twin of ``_parser.pyx``: same names, same results, same errors on
every input. ``slo.lexer`` picks one of them. Change both together.

``scan(text)`` returns ``(statements, errors)``:

- a statement is ``(directive, line, col, items)``, the directive upper-cased;
- for ``FROM``, its items are FROM items, for every other directive items
  (both described, with their field names and quote kinds, in
  ``slo.statements``); in double-quoted values an escaped ``\\$`` comes out
  as ``$$``, which interpolation reads as a literal ``$``;
- an error is ``(line, col, end_col, message)``, its message one of
  ``slo.lexicon``'s. A statement with an error is dropped whole, and
  scanning goes on at the next statement, so one pass reports every lexical
  error.

The text loses one byte order mark at its start, and \\r\\n is read as \\n.
Columns are 1-based and count characters; ``end_col`` is one past the end.
"""

from .lexicon import (ESCAPES, FROM_WITHOUT_PATH, HASH_STARTS_VALUE, INVALID_KEY, MISSING_VALUE, NO_DIRECTIVE,
                      NO_EQUALS, NOT_A_DIRECTIVE, QUOTE_IN_WORD, QUOTED_KEY, SPACE_AFTER_QUOTE, SPACE_AROUND_EQUALS,
                      STRAY_EQUALS, UNKNOWN_ESCAPE, UNTERMINATED_DOUBLE, UNTERMINATED_SINGLE)
from .schema import (DEFAULTS, FAST_BOOL, FAST_CHOICE, FAST_FLOAT, FAST_INT, FAST_NONEMPTY, FAST_PATTERN, FAST_STR, FAST_TABLE,
                     KEY_SECTION, KEYED_DIRECTIVES, RULES)
from .statements import BARE, DOUBLE, ENTRY_ITEM, KEY, QUOTE, SINGLE, VALUE, is_interpolated

BLANKS = " \t\r\f\v"
_NAME_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_NAME_CHARS = _NAME_START + "0123456789"


class _Error(Exception):
    def __init__(self, pos, end, message):
        self.pos = pos
        self.end = end
        self.message = message


def _is_name(word):
    if not word or word[0] not in _NAME_START:
        return False
    for c in word:
        if c not in _NAME_CHARS:
            return False
    return True


def _skip_blanks(text, pos, n):
    while pos < n and text[pos] in BLANKS:
        pos += 1
    return pos


def _end_of_line(text, pos, n):
    while pos < n and text[pos] != "\n":
        pos += 1
    return pos


def _is_continuation(text, pos, n):
    """True when text[pos] is a backslash with only blanks after it on its line."""
    if text[pos] != "\\":
        return False
    pos = _skip_blanks(text, pos + 1, n)
    return pos >= n or text[pos] == "\n"


def _skip_statement(text, pos, n):
    """Position of the newline that ends the statement around pos (or n)."""
    while True:
        eol = _end_of_line(text, pos, n)
        last = eol - 1
        while last >= pos and text[last] in BLANKS:
            last -= 1
        if eol >= n or last < pos or text[last] != "\\":
            return eol
        pos = eol + 1
        # As in scan: comment lines inside a continuation are skipped.
        while True:
            start = _skip_blanks(text, pos, n)
            if start >= n or text[start] != "#":
                break
            pos = _end_of_line(text, start, n)
            if pos >= n:
                return pos
            pos += 1


def _parse_word(text, pos, n):
    """A bare word: up to a blank, a newline or a continuation backslash."""
    start = pos
    while pos < n:
        c = text[pos]
        if c in BLANKS or c == "\n":
            break
        if c == '"' or c == "'":
            raise _Error(pos, pos + 1, QUOTE_IN_WORD)
        if c == "\\" and _is_continuation(text, pos, n):
            break
        pos += 1
    return pos, text[start:pos]


def _parse_quoted(text, pos, n):
    """A quoted string at text[pos]; returns (pos after it, value, quote kind)."""
    quote = text[pos]
    start = pos
    pos += 1
    if quote == "'":
        while pos < n and text[pos] != "'" and text[pos] != "\n":
            pos += 1
        if pos >= n or text[pos] != "'":
            raise _Error(start, start + 1, UNTERMINATED_SINGLE)
        return pos + 1, text[start + 1:pos], SINGLE
    parts = []
    chunk = pos
    while True:
        if pos >= n or text[pos] == "\n":
            raise _Error(start, start + 1, UNTERMINATED_DOUBLE)
        c = text[pos]
        if c == '"':
            parts.append(text[chunk:pos])
            return pos + 1, "".join(parts), DOUBLE
        if c == "\\":
            parts.append(text[chunk:pos])
            if pos + 1 >= n or text[pos + 1] not in ESCAPES:
                shown = text[pos:pos + 2] if pos + 1 < n and text[pos + 1] != "\n" else "\\"
                raise _Error(pos, pos + len(shown), UNKNOWN_ESCAPE.format(escape=shown))
            parts.append(ESCAPES[text[pos + 1]])
            pos += 2
            chunk = pos
        else:
            pos += 1


def _parse_value(text, pos, n, key, key_pos):
    """The value after 'key='; returns (pos after it, value, quote kind)."""
    if pos >= n or text[pos] in BLANKS or text[pos] == "\n" or _is_continuation(text, pos, n):
        if pos < n and text[pos] in BLANKS:
            # 'key= value': a word without '=' after the blanks was meant as the value.
            vpos = _skip_blanks(text, pos, n)
            vend = vpos
            while vend < n and text[vend] not in BLANKS and text[vend] != "\n":
                vend += 1
            word = text[vpos:vend]
            if word and word[0] != "#" and "=" not in word and not _is_continuation(text, vpos, n):
                raise _Error(key_pos, pos, SPACE_AROUND_EQUALS.format(key=key, value=word))
        raise _Error(key_pos, pos, MISSING_VALUE.format(key=key))
    c = text[pos]
    if c == '"' or c == "'":
        end, value, quote = _parse_quoted(text, pos, n)
        if end < n and text[end] not in BLANKS and text[end] != "\n" and not _is_continuation(text, end, n):
            raise _Error(end, end + 1, SPACE_AFTER_QUOTE)
        return end, value, quote
    if c == "#":
        raise _Error(pos, pos + 1, HASH_STARTS_VALUE.format(key=key))
    end, value = _parse_word(text, pos, n)
    return end, value, BARE


def _parse_pair(text, pos, n):
    """key=value at text[pos]; returns (pos after it, key, key_pos, value_pos, value, quote)."""
    start = pos
    while pos < n:
        c = text[pos]
        if c in BLANKS or c == "\n" or c == "=" or c == '"' or c == "'":
            break
        if c == "\\" and _is_continuation(text, pos, n):
            break
        pos += 1
    key = text[start:pos]
    if pos < n and text[pos] == "=":
        if not key:
            raise _Error(pos, pos + 1, STRAY_EQUALS)
        if not _is_name(key):
            raise _Error(start, pos, INVALID_KEY.format(key=key))
        end, value, quote = _parse_value(text, pos + 1, n, key, start)
        return end, key, start, pos + 1, value, quote
    if not key:
        raise _Error(start, start + 1, QUOTED_KEY)
    # No '=' right after the key: either 'key = value' or a word on its own.
    after = _skip_blanks(text, pos, n)
    if after < n and text[after] == "=":
        vpos = _skip_blanks(text, after + 1, n)
        vend = vpos
        while vend < n and text[vend] not in BLANKS and text[vend] != "\n":
            vend += 1
        raise _Error(start, after + 1, SPACE_AROUND_EQUALS.format(key=key, value=text[vpos:vend] or "..."))
    raise _Error(start, pos, NO_EQUALS.format(key=key))


def _parse_path(text, pos, n):
    """A FROM path: a bare word or a quoted string."""
    if text[pos] == '"' or text[pos] == "'":
        end, value, quote = _parse_quoted(text, pos, n)
        if end < n and text[end] not in BLANKS and text[end] != "\n" and not _is_continuation(text, end, n):
            raise _Error(end, end + 1, SPACE_AFTER_QUOTE)
        return end, value, quote
    end, value = _parse_word(text, pos, n)
    return end, value, BARE


def scan(text):
    if text[:1] == "\ufeff":
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    statements = []
    errors = []
    n = len(text)
    pos = 0
    line = 1
    line_start = 0
    while pos < n:
        pos = _skip_blanks(text, pos, n)
        if pos >= n:
            break
        c = text[pos]
        if c == "\n":
            pos += 1
            line += 1
            line_start = pos
            continue
        if c == "#":
            pos = _end_of_line(text, pos, n)
            continue
        # The directive.
        start = pos
        while pos < n and text[pos] in _NAME_CHARS:
            pos += 1
        stmt_line = line
        stmt_col = start - line_start + 1
        stmt_line_start = line_start
        try:
            if pos == start or text[start] not in _NAME_START or (
                    pos < n and text[pos] not in BLANKS and text[pos] != "\n"
                    and not _is_continuation(text, pos, n)):
                end = pos
                while end < n and text[end] not in BLANKS and text[end] != "\n":
                    end += 1
                word = text[start:end]
                if "=" in word and _is_name(word[:word.index("=")]):
                    raise _Error(start, end, NO_DIRECTIVE.format(word=word))
                raise _Error(start, max(end, start + 1), NOT_A_DIRECTIVE.format(word=word))
            directive = text[start:pos].upper()
            is_from = directive == "FROM"
            items = []
            while True:
                pos = _skip_blanks(text, pos, n)
                if pos >= n:
                    break
                c = text[pos]
                if c == "\n":
                    break
                if c == "#":
                    pos = _end_of_line(text, pos, n)
                    break
                if c == "\\" and _is_continuation(text, pos, n):
                    # Join the next line; comment lines inside are skipped.
                    pos = _end_of_line(text, pos, n)
                    while pos < n:
                        pos += 1
                        line += 1
                        line_start = pos
                        pos = _skip_blanks(text, pos, n)
                        if pos < n and text[pos] == "#":
                            pos = _end_of_line(text, pos, n)
                            continue
                        break
                    continue
                if is_from:
                    end, value, quote = _parse_path(text, pos, n)
                    items.append((value, line, pos - line_start + 1, end - line_start + 1, quote))
                else:
                    end, key, key_pos, value_pos, value, quote = _parse_pair(text, pos, n)
                    items.append((key, value, line, key_pos - line_start + 1,
                                  value_pos - line_start + 1, end - line_start + 1, quote))
                pos = end
            if is_from and not items:
                raise _Error(start, start + 4, FROM_WITHOUT_PATH)
            statements.append((directive, stmt_line, stmt_col, items))
        except _Error as e:
            if e.pos < line_start:  # a FROM with no path, found past a continuation: point at the FROM
                line, line_start = stmt_line, stmt_line_start
            errors.append((line, e.pos - line_start + 1, max(e.end, e.pos + 1) - line_start + 1, e.message))
            end = _skip_statement(text, e.pos, n)
            # Count the lines the skipped statement spanned.
            line += text.count("\n", e.pos, end)
            pos = end
            line_start = text.rfind("\n", 0, pos) + 1
    return statements, errors


# ---- fast typing of plain values (see slo.schema.FAST_TABLE) -------------

_FLOAT_CHARS = frozenset("0123456789.eE+-")
_BOOL_WORDS = {"True": True, "False": False, "true": True, "false": False}
_NONE_WORDS = frozenset(("None", "none", "null"))
_SECTIONS = frozenset(KEYED_DIRECTIVES)
_NOT_TYPED = object()
# key -> the bits of the cross-field rules that read it (bit i: slo.schema.RULES[i])
RULE_BITS = {key: sum(1 << i for i, (keys, _) in enumerate(RULES) if key in keys) for key in FAST_TABLE}


def type_values(entries):
    """The final values of every key, as far as plain rules can type them.

    entries maps key -> (item, path, overridden), the rules are the schema's
    FAST_TABLE. Returns (final, rest, rules): final is the schema's DEFAULTS
    with each typed value written over its key's; rest lists the keys left,
    in order, to the schema's own converters and the resolver (final still
    holds their defaults): interpolations, values that are not plain (TOML
    values, '1e6' for an int, '1_000', ...) and values out of range, whose
    converter then explains the error; rules has bit i set when RULES[i]
    reads a key of entries, so the resolver checks only those. A value that
    is one ``${key}`` and nothing else takes that key's final value when that
    is typed here (or is the default) and of the right type already.
    """
    final = DEFAULTS.copy()
    rest = []
    refs = []
    rules = 0
    for key, entry in entries.items():
        rules |= RULE_BITS.get(key, 0)
        item = entry[ENTRY_ITEM]
        raw = item[VALUE]
        if type(raw) is not str:
            rest.append(key)
            continue
        if is_interpolated(raw, item[QUOTE]):
            rest.append(key)
            if raw[:2] == "${" and raw.find("}") == len(raw) - 1:
                refs.append(key)
            continue
        value = _type_text(raw, FAST_TABLE[key])
        if value is _NOT_TYPED:
            rest.append(key)
        else:
            final[key] = value
    for key in refs:
        ref = entries[key][ENTRY_ITEM][VALUE][2:-1]
        if ref not in FAST_TABLE or ref in rest:
            continue
        value = _type_value(final[ref], FAST_TABLE[key])
        if value is not _NOT_TYPED:
            final[key] = value
            rest.remove(key)
    return final, rest, rules


def _type_text(raw, spec):
    """raw typed by spec, or _NOT_TYPED."""
    if spec[1] and raw in _NONE_WORDS:
        return None
    code = spec[0]
    if code == FAST_INT:
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            return _NOT_TYPED
        return _in_range(int(raw), spec)
    if code == FAST_FLOAT:
        if not raw or not _FLOAT_CHARS.issuperset(raw):
            return _NOT_TYPED
        try:
            value = float(raw)
        except ValueError:
            return _NOT_TYPED
        if value != value or value in (float("inf"), float("-inf")):
            return _NOT_TYPED
        return _in_range(value, spec)
    if code == FAST_BOOL:
        return _BOOL_WORDS.get(raw, _NOT_TYPED)
    return _type_str(raw, spec)


def _type_str(raw, spec):
    code = spec[0]
    if (code == FAST_STR or (code == FAST_CHOICE and raw in spec[6]) or (code == FAST_NONEMPTY and raw)
            or (code == FAST_PATTERN and spec[6](raw) is not None)):
        return raw
    return _NOT_TYPED


def _type_value(value, spec):
    """Another key's typed value checked against spec (its type unchanged), or _NOT_TYPED."""
    if type(value) is str:
        return _type_text(value, spec)
    if value is None:
        return None if spec[1] else _NOT_TYPED
    code = spec[0]
    if (code == FAST_INT and type(value) is int) or (code == FAST_FLOAT and type(value) is float):
        return _in_range(value, spec)
    if code == FAST_BOOL and type(value) is bool:
        return value
    return _NOT_TYPED


def _in_range(value, spec):
    low, low_open, high, high_open = spec[2], spec[3], spec[4], spec[5]
    if ((low is not None and (value < low or (low_open and value == low)))
            or (high is not None and (value > high or (high_open and value == high)))):
        return _NOT_TYPED
    return value


# ---- sorting statements into assignments (see slo.formats.config_lang.read_config) ---

def read(text, path):
    """A .config text sorted for the resolver: (bases, sets, env, problems, errors, entries, env_entries).

    errors are scan's; then _index_statements's four; then the chains of
    sets and of env from the file at path.
    """
    statements, errors = scan(text)
    bases, sets, env, problems = _index_statements(statements, KEY_SECTION, _SECTIONS)
    return bases, sets, env, problems, errors, chain(sets, path), chain(env, path)


def _index_statements(statements, key_section, sections):
    """Sort scanned statements into FROM bases, assignments and problems.

    key_section maps each key to its directive; sections is the set of
    directives that own keys. Returns (bases, sets, env, problems): the FROM
    items written before any other directive, the key items and the ENV
    items in file order, and (kind, statement, item) for each problem the
    caller reports, in file order: "late-from" (a FROM after another
    directive; item None), "directive" (an unknown directive; item None),
    "key" (an unknown key, or one under another directive; left out of
    sets), "twice" (a key or ENV name set again; kept in sets or env).
    """
    bases = []
    sets = []
    env = []
    problems = []
    seen = set()
    seen_env = set()
    others = False
    for statement in statements:
        directive, _, _, items = statement
        if directive == "FROM":
            if others:
                problems.append(("late-from", statement, None))
            else:
                bases.extend(items)
            continue
        others = True
        if directive == "ENV":
            for item in items:
                if item[KEY] in seen_env:
                    problems.append(("twice", statement, item))
                seen_env.add(item[KEY])
                env.append(item)
        elif directive in sections:
            for item in items:
                key = item[KEY]
                if key_section.get(key) != directive:
                    problems.append(("key", statement, item))
                    continue
                if key in seen:
                    problems.append(("twice", statement, item))
                seen.add(key)
                sets.append(item)
        else:
            problems.append(("directive", statement, None))
    return bases, sets, env, problems


def chain(items, path):
    """key -> provenance entry (item, path, entry it overrode or None), items applied in order."""
    entries = {}
    for item in items:
        entries[item[KEY]] = (item, path, entries.get(item[KEY]))
    return entries
