# cython: language_level=3, boundscheck=False, wraparound=False
"""The tokenizer of the .config language, compiled.

The twin of ``_parser_py.py``, whose docstring describes ``scan``: same
names, same results, same errors on every input. Change both together.
"""

cdef dict _ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "$": "$$"}


class _Error(Exception):
    def __init__(self, pos, end, message):
        self.pos = pos
        self.end = end
        self.message = message


cdef inline bint _blank(Py_UCS4 c):
    return c == u' ' or c == u'\t' or c == u'\r' or c == u'\f' or c == u'\v'


cdef inline bint _name_start(Py_UCS4 c):
    return (u'A' <= c <= u'Z') or (u'a' <= c <= u'z') or c == u'_'


cdef inline bint _name_char(Py_UCS4 c):
    return _name_start(c) or (u'0' <= c <= u'9')


cdef bint _is_name(str word):
    cdef Py_UCS4 c
    if not word or not _name_start(word[0]):
        return False
    for c in word:
        if not _name_char(c):
            return False
    return True


cdef inline Py_ssize_t _skip_blanks(str text, Py_ssize_t pos, Py_ssize_t n):
    while pos < n and _blank(text[pos]):
        pos += 1
    return pos


cdef inline Py_ssize_t _end_of_line(str text, Py_ssize_t pos, Py_ssize_t n):
    while pos < n and text[pos] != u'\n':
        pos += 1
    return pos


cdef inline bint _is_continuation(str text, Py_ssize_t pos, Py_ssize_t n):
    if text[pos] != u'\\':
        return False
    pos = _skip_blanks(text, pos + 1, n)
    return pos >= n or text[pos] == u'\n'


cdef Py_ssize_t _skip_statement(str text, Py_ssize_t pos, Py_ssize_t n):
    cdef Py_ssize_t eol, last, start
    while True:
        eol = _end_of_line(text, pos, n)
        last = eol - 1
        while last >= pos and _blank(text[last]):
            last -= 1
        if eol >= n or last < pos or text[last] != u'\\':
            return eol
        pos = eol + 1
        while True:
            start = _skip_blanks(text, pos, n)
            if start >= n or text[start] != u'#':
                break
            pos = _end_of_line(text, start, n)
            if pos >= n:
                return pos
            pos += 1


cdef Py_ssize_t _word_end(str text, Py_ssize_t pos, Py_ssize_t n) except -1:
    cdef Py_UCS4 c
    while pos < n:
        c = text[pos]
        if _blank(c) or c == u'\n':
            break
        if c == u'"' or c == u"'":
            raise _Error(pos, pos + 1, "Unexpected quote inside a bare value; quote the whole value instead")
        if c == u'\\' and _is_continuation(text, pos, n):
            break
        pos += 1
    return pos


cdef tuple _parse_quoted(str text, Py_ssize_t pos, Py_ssize_t n):
    cdef Py_UCS4 quote = text[pos]
    cdef Py_ssize_t start = pos, chunk
    cdef Py_UCS4 c
    cdef list parts
    pos += 1
    if quote == u"'":
        while pos < n and text[pos] != u"'" and text[pos] != u'\n':
            pos += 1
        if pos >= n or text[pos] != u"'":
            raise _Error(start, start + 1, "Unterminated single-quoted string: add the closing '")
        return pos + 1, text[start + 1:pos], 2
    parts = []
    chunk = pos
    while True:
        if pos >= n or text[pos] == u'\n':
            raise _Error(start, start + 1, 'Unterminated double-quoted string: add the closing "')
        c = text[pos]
        if c == u'"':
            parts.append(text[chunk:pos])
            return pos + 1, "".join(parts), 1
        if c == u'\\':
            parts.append(text[chunk:pos])
            if pos + 1 >= n or text[pos + 1] not in _ESCAPES:
                shown = text[pos:pos + 2] if pos + 1 < n and text[pos + 1] != u'\n' else "\\"
                raise _Error(pos, pos + len(shown),
                             f"Unknown escape {shown} in a double-quoted string"
                             " (known: \\\" \\\\ \\n \\t \\$; single quotes take text as written)")
            parts.append(_ESCAPES[text[pos + 1]])
            pos += 2
            chunk = pos
        else:
            pos += 1


cdef inline bint _after_quote_ok(str text, Py_ssize_t end, Py_ssize_t n):
    return end >= n or _blank(text[end]) or text[end] == u'\n' or _is_continuation(text, end, n)


cdef tuple _parse_value(str text, Py_ssize_t pos, Py_ssize_t n, str key, Py_ssize_t key_pos):
    cdef Py_ssize_t end
    if pos >= n or _blank(text[pos]) or text[pos] == u'\n' or _is_continuation(text, pos, n):
        raise _Error(key_pos, pos, f'Missing value after {key}=; write {key}="" for an empty string')
    cdef Py_UCS4 c = text[pos]
    if c == u'"' or c == u"'":
        result = _parse_quoted(text, pos, n)
        end = result[0]
        if not _after_quote_ok(text, end, n):
            raise _Error(end, end + 1, "Expected whitespace after the closing quote")
        return result
    if c == u'#':
        raise _Error(pos, pos + 1, f'A bare value cannot start with #; quote it: {key}="#..."')
    end = _word_end(text, pos, n)
    return end, text[pos:end], 0


cdef tuple _parse_pair(str text, Py_ssize_t pos, Py_ssize_t n):
    cdef Py_ssize_t start = pos, after, vpos, vend
    cdef Py_UCS4 c
    while pos < n:
        c = text[pos]
        if _blank(c) or c == u'\n' or c == u'=' or c == u'"' or c == u"'":
            break
        if c == u'\\' and _is_continuation(text, pos, n):
            break
        pos += 1
    key = text[start:pos]
    if pos < n and text[pos] == u'=':
        if not key:
            raise _Error(pos, pos + 1, "Stray '=' with no key before it")
        if not _is_name(key):
            raise _Error(start, pos, f"Invalid key {key!r}: a key is letters, digits and _, not starting with a digit")
        end, value, quote = _parse_value(text, pos + 1, n, key, start)
        return end, key, start, pos + 1, value, quote
    if not key:
        raise _Error(start, start + 1, "Expected key=value, found a quoted string")
    after = _skip_blanks(text, pos, n)
    if after < n and text[after] == u'=':
        vpos = _skip_blanks(text, after + 1, n)
        vend = vpos
        while vend < n and not _blank(text[vend]) and text[vend] != u'\n':
            vend += 1
        raise _Error(start, after + 1, f"No whitespace is allowed around '=': write {key}={text[vpos:vend] or '...'}")
    raise _Error(start, pos, f"Expected key=value, found {key!r} with no '='")


cdef tuple _parse_path(str text, Py_ssize_t pos, Py_ssize_t n):
    cdef Py_ssize_t end
    if text[pos] == u'"' or text[pos] == u"'":
        result = _parse_quoted(text, pos, n)
        end = result[0]
        if not _after_quote_ok(text, end, n):
            raise _Error(end, end + 1, "Expected whitespace after the closing quote")
        return result
    end = _word_end(text, pos, n)
    return end, text[pos:end], 0


def scan(str text):
    if text[:1] == "\ufeff":
        text = text[1:]
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    cdef list statements = []
    cdef list errors = []
    cdef list items
    cdef Py_ssize_t n = len(text)
    cdef Py_ssize_t pos = 0, line = 1, line_start = 0, start, end, stmt_line, stmt_col, key_pos, value_pos
    cdef Py_UCS4 c
    cdef bint is_from
    while pos < n:
        pos = _skip_blanks(text, pos, n)
        if pos >= n:
            break
        c = text[pos]
        if c == u'\n':
            pos += 1
            line += 1
            line_start = pos
            continue
        if c == u'#':
            pos = _end_of_line(text, pos, n)
            continue
        start = pos
        while pos < n and _name_char(text[pos]):
            pos += 1
        stmt_line = line
        stmt_col = start - line_start + 1
        try:
            if pos == start or not _name_start(text[start]) or (
                    pos < n and not _blank(text[pos]) and text[pos] != u'\n'
                    and not _is_continuation(text, pos, n)):
                end = pos
                while end < n and not _blank(text[end]) and text[end] != u'\n':
                    end += 1
                word = text[start:end]
                if "=" in word and _is_name(word[:word.index("=")]):
                    raise _Error(start, end, f"Expected a directive (such as MODEL or DATA) before {word}")
                raise _Error(start, max(end, start + 1), f"Expected a directive name, found {word!r}")
            directive = text[start:pos].upper()
            is_from = directive == "FROM"
            items = []
            while True:
                pos = _skip_blanks(text, pos, n)
                if pos >= n:
                    break
                c = text[pos]
                if c == u'\n':
                    break
                if c == u'#':
                    pos = _end_of_line(text, pos, n)
                    break
                if c == u'\\' and _is_continuation(text, pos, n):
                    pos = _end_of_line(text, pos, n)
                    while pos < n:
                        pos += 1
                        line += 1
                        line_start = pos
                        pos = _skip_blanks(text, pos, n)
                        if pos < n and text[pos] == u'#':
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
                raise _Error(start, start + 4, "FROM needs at least one path")
            statements.append((directive, stmt_line, stmt_col, items))
        except _Error as e:
            errors.append((line, e.pos - line_start + 1, max(e.end, e.pos + 1) - line_start + 1, e.message))
            end = _skip_statement(text, e.pos, n)
            line += text.count("\n", e.pos, end)
            pos = end
            line_start = text.rfind("\n", 0, pos) + 1
    return statements, errors
