"""The one reader of YAML parameters (params files, `--set` and `--config` values, the schema):
UTF-8 only, nesting bounded, and aliases allowed only while the document they expand to stays
small; merge keys refused. Any problem is a ConfigError naming the source, line and column."""

from __future__ import annotations

import yaml

from maln.errors import ConfigError

# Parameters nest a few levels; far deeper input is refused before yaml's recursive reader (and
# the validation, copying and hashing after it) runs out of stack.
MAX_DEPTH = 32
# Parameters hold a few hundred values (the shipped file about 650). Aliases may repeat a value
# (PyYAML's own safe_dump writes one wherever a dict repeats an object), but a few lines of nested
# aliases denote more values than memory holds: the document is measured as aliases expand it,
# before anything expands it, and refused beyond this many values.
MAX_VALUES = 10_000
MERGE = "tag:yaml.org,2002:merge"
MAX_DIGITS = 100


class _Refused(yaml.YAMLError):
    """Valid YAML that parameters may not use."""

    def __init__(self, problem: str, mark):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _ParamsLoader(yaml.SafeLoader):
    """yaml's safe loader with the expanded document bounded: every value counts once per place it
    appears (an alias counts its whole value again), the count and the nesting depth are checked
    as each alias is met, an alias inside the value it names (a cycle) is refused, and so are merge
    keys (`<<`), which change a mapping's keys behind its back."""

    def compose_document(self):
        self._depth, self._values, self._open, self._measured = 0, 0, set(), {}
        return super().compose_document()

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise _Refused(f"the alias *{event.anchor} lies inside the value it names (a cycle)", event.start_mark)
            node = super().compose_node(parent, index)
            values, height = self._measure(node)
            self._values += values
            if self._depth + height > MAX_DEPTH:
                raise _Refused(f"the alias *{event.anchor} nests the parameters more than {MAX_DEPTH} levels deep",
                               event.start_mark)
            if self._values > MAX_VALUES:
                raise _Refused(f"the alias *{event.anchor} expands the parameters beyond {MAX_VALUES} values; aliases "
                               "may repeat a value, not multiply it (write the values out)", event.start_mark)
            return node
        self._depth += 1
        self._values += 1
        if event.anchor is not None:
            self._open.add(event.anchor)
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            if self._values > MAX_VALUES:
                raise _Refused(f"more than {MAX_VALUES} values; parameters hold a few hundred", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(event.anchor)

    def _measure(self, node) -> tuple[int, int]:
        """(values, depth) of a complete node with its aliases expanded, memoised per node (an
        alias of an alias is measured once), never expanding anything."""
        key = id(node)
        if key not in self._measured:
            children = (node.value if isinstance(node, yaml.SequenceNode) else
                        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
            sizes = [self._measure(child) for child in children]
            self._measured[key] = (node, 1 + sum(v for v, _ in sizes), 1 + max((h for _, h in sizes), default=0))
        return self._measured[key][1:]

    def flatten_mapping(self, node):
        for key, _ in node.value:
            if key.tag == MERGE:
                raise _Refused("a merge key `<<`: merge keys are not allowed in parameters; write the keys out",
                               key.start_mark)
        super().flatten_mapping(node)

    def construct_yaml_int(self, node):
        """An integer, unless its digits are beyond any parameter (and beyond what a message can
        print: Python converts at most 4300 decimal digits, and hexadecimal ones have no limit)."""
        try:
            value = super().construct_yaml_int(node)
        except ValueError:
            value = None
        if value is None or abs(value) >= 10**MAX_DIGITS:
            raise _Refused(f"an integer of more than {MAX_DIGITS} digits", node.start_mark)
        return value


_ParamsLoader.add_constructor("tag:yaml.org,2002:int", _ParamsLoader.construct_yaml_int)


def _tree(value):
    """`value` with every shared list and mapping copied apart: an alias's two places become two
    values, so a `--set` of one never changes the other."""
    if isinstance(value, dict):
        return {k: _tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tree(v) for v in value]
    return value


def read_yaml(text: str | bytes, source: str):
    """The one reader of parameters (params files, `--set` values, the schema): UTF-8 YAML whose
    aliases expand to a small document, any problem a ConfigError that names `source`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{source}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                              "save it as UTF-8") from None
    try:
        return _tree(yaml.load(text, Loader=_ParamsLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = "" if isinstance(e, _Refused) else "not valid YAML: "
        raise ConfigError(f"{source}: {where}{what}{getattr(e, 'problem', None) or e}") from None
