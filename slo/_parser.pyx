# cython: language_level=3, boundscheck=False, wraparound=False
"""The tokenizer of the .config language, compiled.

The twin of ``_parser_py.py``, whose docstring describes ``scan``: same
names, same results, same errors on every input. Change both together.

Characters are read from a UCS-4 copy of the text (``s``), so the inner
loops are plain array reads; values are sliced from the ``str`` itself.
"""

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void* op)


cdef inline tuple _untracked(tuple item):
    """item, which holds only strings and ints, left out of the cyclic garbage collector's work
    (as CPython itself does for such tuples, but at once): a long file makes many."""
    PyObject_GC_UnTrack(<void*> item)
    return item


cdef dict _ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "$": "$$"}


class _Error(Exception):
    def __init__(self, pos, end, message):
        self.pos = pos
        self.end = end
        self.message = message


cdef inline bint _blank(Py_UCS4 c) noexcept:
    return c == u' ' or c == u'\t' or c == u'\r' or c == u'\f' or c == u'\v'


cdef inline bint _name_start(Py_UCS4 c) noexcept:
    return (u'A' <= c <= u'Z') or (u'a' <= c <= u'z') or c == u'_'


cdef inline bint _name_char(Py_UCS4 c) noexcept:
    return _name_start(c) or (u'0' <= c <= u'9')


cdef bint _is_name(const Py_UCS4* s, Py_ssize_t start, Py_ssize_t end) noexcept:
    cdef Py_ssize_t i
    if end <= start or not _name_start(s[start]):
        return False
    for i in range(start + 1, end):
        if not _name_char(s[i]):
            return False
    return True


cdef inline Py_ssize_t _skip_blanks(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) noexcept:
    while pos < n and _blank(s[pos]):
        pos += 1
    return pos


cdef inline Py_ssize_t _end_of_line(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) noexcept:
    while pos < n and s[pos] != u'\n':
        pos += 1
    return pos


cdef inline bint _is_continuation(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) noexcept:
    """True when s[pos] is a backslash with only blanks after it on its line."""
    if s[pos] != u'\\':
        return False
    pos = _skip_blanks(s, pos + 1, n)
    return pos >= n or s[pos] == u'\n'


cdef Py_ssize_t _skip_statement(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) noexcept:
    """Position of the newline that ends the statement around pos (or n)."""
    cdef Py_ssize_t eol, last, start
    while True:
        eol = _end_of_line(s, pos, n)
        last = eol - 1
        while last >= pos and _blank(s[last]):
            last -= 1
        if eol >= n or last < pos or s[last] != u'\\':
            return eol
        pos = eol + 1
        while True:
            start = _skip_blanks(s, pos, n)
            if start >= n or s[start] != u'#':
                break
            pos = _end_of_line(s, start, n)
            if pos >= n:
                return pos
            pos += 1


cdef Py_ssize_t _word_end(const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n) except -1:
    """End of a bare word: a blank, a newline or a continuation backslash."""
    cdef Py_UCS4 c
    while pos < n:
        c = s[pos]
        if _blank(c) or c == u'\n':
            break
        if c == u'"' or c == u"'":
            raise _Error(pos, pos + 1, "Unexpected quote inside a bare value; quote the whole value instead")
        if c == u'\\' and _is_continuation(s, pos, n):
            break
        pos += 1
    return pos


cdef object _parse_quoted(str text, const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t* end, int* quote):
    """The quoted string at pos; sets end (past the closing quote) and quote (1 or 2)."""
    cdef Py_UCS4 q = s[pos]
    cdef Py_ssize_t start = pos, chunk
    cdef Py_UCS4 c
    cdef list parts
    pos += 1
    if q == u"'":
        while pos < n and s[pos] != u"'" and s[pos] != u'\n':
            pos += 1
        if pos >= n or s[pos] != u"'":
            raise _Error(start, start + 1, "Unterminated single-quoted string: add the closing '")
        end[0] = pos + 1
        quote[0] = 2
        return text[start + 1:pos]
    parts = None
    chunk = pos
    while True:
        if pos >= n or s[pos] == u'\n':
            raise _Error(start, start + 1, 'Unterminated double-quoted string: add the closing "')
        c = s[pos]
        if c == u'"':
            end[0] = pos + 1
            quote[0] = 1
            if parts is None:
                return text[chunk:pos]
            parts.append(text[chunk:pos])
            return "".join(parts)
        if c == u'\\':
            if parts is None:
                parts = []
            parts.append(text[chunk:pos])
            if pos + 1 >= n or s[pos + 1] not in u'"\\nt$':
                shown = text[pos:pos + 2] if pos + 1 < n and s[pos + 1] != u'\n' else "\\"
                raise _Error(pos, pos + len(shown),
                             f"Unknown escape {shown} in a double-quoted string"
                             " (known: \\\" \\\\ \\n \\t \\$; single quotes take text as written)")
            parts.append(_ESCAPES[text[pos + 1]])
            pos += 2
            chunk = pos
        else:
            pos += 1


cdef inline bint _after_quote_ok(const Py_UCS4* s, Py_ssize_t end, Py_ssize_t n) noexcept:
    return end >= n or _blank(s[end]) or s[end] == u'\n' or _is_continuation(s, end, n)


cdef object _parse_value(str text, const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n, str key,
                         Py_ssize_t key_pos, Py_ssize_t* end, int* quote):
    """The value after 'key='; sets end and quote (0 bare, 1 double, 2 single)."""
    cdef Py_ssize_t vpos, vend
    if pos >= n or _blank(s[pos]) or s[pos] == u'\n' or _is_continuation(s, pos, n):
        if pos < n and _blank(s[pos]):
            # 'key= value': a word without '=' after the blanks was meant as the value.
            vpos = _skip_blanks(s, pos, n)
            vend = vpos
            while vend < n and not _blank(s[vend]) and s[vend] != u'\n':
                vend += 1
            word = text[vpos:vend]
            if vend > vpos and s[vpos] != u'#' and "=" not in word and not _is_continuation(s, vpos, n):
                raise _Error(key_pos, pos, f"No whitespace is allowed around '=': write {key}={word}")
        raise _Error(key_pos, pos, f'Missing value after {key}=; write {key}="" for an empty string')
    cdef Py_UCS4 c = s[pos]
    if c == u'"' or c == u"'":
        value = _parse_quoted(text, s, pos, n, end, quote)
        if not _after_quote_ok(s, end[0], n):
            raise _Error(end[0], end[0] + 1, "Expected whitespace after the closing quote")
        return value
    if c == u'#':
        raise _Error(pos, pos + 1, f'A bare value cannot start with #; quote it: {key}="#..."')
    end[0] = _word_end(s, pos, n)
    quote[0] = 0
    return text[pos:end[0]]


cdef tuple _parse_pair(str text, const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t line,
                       Py_ssize_t line_start, Py_ssize_t* end):
    """The item of the key=value at pos; sets end."""
    cdef Py_ssize_t start = pos, after, vpos, vend
    cdef int quote = 0
    cdef Py_UCS4 c
    while pos < n:
        c = s[pos]
        if _blank(c) or c == u'\n' or c == u'=' or c == u'"' or c == u"'":
            break
        if c == u'\\' and _is_continuation(s, pos, n):
            break
        pos += 1
    if pos < n and s[pos] == u'=':
        if pos == start:
            raise _Error(pos, pos + 1, "Stray '=' with no key before it")
        key = text[start:pos]
        if not _is_name(s, start, pos):
            raise _Error(start, pos, f"Invalid key {key!r}: a key is letters, digits and _, not starting with a digit")
        value = _parse_value(text, s, pos + 1, n, key, start, end, &quote)
        return _untracked((key, value, line, start - line_start + 1, pos - line_start + 2, end[0] - line_start + 1,
                           quote))
    if pos == start:
        raise _Error(start, start + 1, "Expected key=value, found a quoted string")
    key = text[start:pos]
    after = _skip_blanks(s, pos, n)
    if after < n and s[after] == u'=':
        vpos = _skip_blanks(s, after + 1, n)
        vend = vpos
        while vend < n and not _blank(s[vend]) and s[vend] != u'\n':
            vend += 1
        raise _Error(start, after + 1, f"No whitespace is allowed around '=': write {key}={text[vpos:vend] or '...'}")
    raise _Error(start, pos, f"Expected key=value, found {key!r} with no '='")


cdef tuple _parse_path(str text, const Py_UCS4* s, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t line,
                       Py_ssize_t line_start, Py_ssize_t* end):
    """The item of the FROM path (bare or quoted) at pos; sets end."""
    cdef int quote = 0
    if s[pos] == u'"' or s[pos] == u"'":
        value = _parse_quoted(text, s, pos, n, end, &quote)
        if not _after_quote_ok(s, end[0], n):
            raise _Error(end[0], end[0] + 1, "Expected whitespace after the closing quote")
    else:
        end[0] = _word_end(s, pos, n)
        value = text[pos:end[0]]
    return _untracked((value, line, pos - line_start + 1, end[0] - line_start + 1, quote))


def scan(str text):
    if text[:1] == "\ufeff":
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    cdef bytes wide = text.encode("utf-32-le", "surrogatepass")
    cdef const Py_UCS4* s = <const Py_UCS4*> <const char*> wide
    cdef list statements = []
    cdef list errors = []
    cdef list items
    cdef Py_ssize_t n = len(text)
    cdef Py_ssize_t pos = 0, line = 1, line_start = 0, start, end = 0, stmt_line, stmt_col, stmt_line_start, eq
    cdef Py_UCS4 c
    cdef bint is_from
    while pos < n:
        pos = _skip_blanks(s, pos, n)
        if pos >= n:
            break
        c = s[pos]
        if c == u'\n':
            pos += 1
            line += 1
            line_start = pos
            continue
        if c == u'#':
            pos = _end_of_line(s, pos, n)
            continue
        # The directive.
        start = pos
        while pos < n and _name_char(s[pos]):
            pos += 1
        stmt_line = line
        stmt_col = start - line_start + 1
        stmt_line_start = line_start
        try:
            if pos == start or not _name_start(s[start]) or (
                    pos < n and not _blank(s[pos]) and s[pos] != u'\n'
                    and not _is_continuation(s, pos, n)):
                end = pos
                while end < n and not _blank(s[end]) and s[end] != u'\n':
                    end += 1
                word = text[start:end]
                eq = start
                while eq < end and s[eq] != u'=':
                    eq += 1
                if eq < end and _is_name(s, start, eq):
                    raise _Error(start, end, f"Expected a directive (such as MODEL or DATA) before {word}")
                raise _Error(start, max(end, start + 1), f"Expected a directive name, found {word!r}")
            directive = text[start:pos].upper()
            is_from = directive == "FROM"
            items = []
            while True:
                pos = _skip_blanks(s, pos, n)
                if pos >= n:
                    break
                c = s[pos]
                if c == u'\n':
                    break
                if c == u'#':
                    pos = _end_of_line(s, pos, n)
                    break
                if c == u'\\' and _is_continuation(s, pos, n):
                    # Join the next line; comment lines inside are skipped.
                    pos = _end_of_line(s, pos, n)
                    while pos < n:
                        pos += 1
                        line += 1
                        line_start = pos
                        pos = _skip_blanks(s, pos, n)
                        if pos < n and s[pos] == u'#':
                            pos = _end_of_line(s, pos, n)
                            continue
                        break
                    continue
                if is_from:
                    items.append(_parse_path(text, s, pos, n, line, line_start, &end))
                else:
                    items.append(_parse_pair(text, s, pos, n, line, line_start, &end))
                pos = end
            if is_from and not items:
                raise _Error(start, start + 4, "FROM needs at least one path")
            statements.append((directive, stmt_line, stmt_col, items))
        except _Error as e:
            if e.pos < line_start:  # a FROM with no path, found past a continuation: point at the FROM
                line, line_start = stmt_line, stmt_line_start
            errors.append((line, e.pos - line_start + 1, max(e.end, e.pos + 1) - line_start + 1, e.message))
            end = _skip_statement(s, e.pos, n)
            line += text.count("\n", e.pos, end)
            pos = end
            line_start = text.rfind("\n", 0, pos) + 1
    return statements, errors


# ---- fast typing of plain values (see slo.schema.FAST_TABLE) -------------

from libc.math cimport isfinite

cdef dict _BOOL_WORDS = {"True": True, "False": False, "true": True, "false": False}
cdef frozenset _NONE_WORDS = frozenset(("None", "none", "null"))


cdef bint _all_digits(str raw) noexcept:
    cdef Py_UCS4 c
    if len(raw) == 0 or len(raw) > 18:
        return False
    for c in raw:
        if c < u'0' or c > u'9':
            return False
    return True


cdef bint _float_chars(str raw) noexcept:
    cdef Py_UCS4 c
    if len(raw) == 0:
        return False
    for c in raw:
        if not ((u'0' <= c <= u'9') or c == u'.' or c == u'e' or c == u'E' or c == u'+' or c == u'-'):
            return False
    return True


cdef bint _in_bounds(double value, tuple spec) except -1:
    low = spec[2]
    high = spec[4]
    if low is not None and (value < <double> low or (spec[3] and value == <double> low)):
        return False
    if high is not None and (value > <double> high or (spec[5] and value == <double> high)):
        return False
    return True


def type_values(dict entries, dict table):
    cdef dict typed = {}
    cdef list rest = []
    cdef tuple item, spec
    cdef int code
    cdef double f
    for key, entry in entries.items():
        item = <tuple> (<tuple> entry)[0]
        raw = item[1]
        spec = <tuple> table[key]
        if type(raw) is not str or (item[6] != 2 and "$" in <str> raw):
            rest.append(key)
            continue
        if spec[1] and raw in _NONE_WORDS:
            typed[key] = None
            continue
        code = spec[0]
        if code == 0:
            if not _all_digits(raw):
                rest.append(key)
                continue
            value = int(raw)
            f = <double> value
        elif code == 1:
            if not _float_chars(raw):
                rest.append(key)
                continue
            try:
                value = float(raw)
            except ValueError:
                rest.append(key)
                continue
            f = value
            if not isfinite(f):
                rest.append(key)
                continue
        elif code == 2:
            value = _BOOL_WORDS.get(raw)
            if value is None:
                rest.append(key)
            else:
                typed[key] = value
            continue
        elif code == 3 or (code == 4 and raw in <frozenset> spec[6]) or (code == 5 and len(<str> raw) > 0):
            typed[key] = raw
            continue
        else:
            rest.append(key)
            continue
        if _in_bounds(f, spec):
            typed[key] = value
        else:
            rest.append(key)
    return typed, rest


# ---- sorting statements into assignments (see slo.resolve.read_config) ---

def index_statements(list statements, dict key_section, sections):
    cdef list bases = [], sets = [], env = [], problems = []
    cdef set seen = set(), seen_env = set()
    cdef bint others = False
    cdef tuple statement, item
    for statement in statements:
        directive = statement[0]
        if directive == "FROM":
            if others:
                problems.append(("late-from", statement, None))
            else:
                bases.extend(statement[3])
            continue
        others = True
        if directive == "ENV":
            for item in statement[3]:
                if item[0] in seen_env:
                    problems.append(("twice", statement, item))
                seen_env.add(item[0])
                env.append(item)
        elif directive in sections:
            for item in statement[3]:
                key = item[0]
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


def chain(list items, path):
    cdef dict entries = {}
    cdef tuple item
    for item in items:
        key = item[0]
        entries[key] = (item, path, entries.get(key))
    return entries
