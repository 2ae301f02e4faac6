"""Rule sentences on the flag page read as prose: lists joined with "or", never Python reprs."""

from flags.rule_text import condition, describe


def custom(operator, value, field="locale"):
    return {"type": "custom", "field": field, "operator": operator, "value": value}


def test_list_values_read_as_prose():
    assert condition(custom("starts_with", ["en", "de"])) == "locale starts with en or de"
    assert condition(custom("ends_with", ["@a.dev", "@b.dev", "@c.dev"], "email")) == \
        "email ends with @a.dev, @b.dev or @c.dev"
    assert condition(custom("in", ["suspended", "trial-expired"], "plan")) == "plan is suspended or trial-expired"
    assert condition(custom("in_cidr", ["10.0.0.0/8"], "ip")) == "ip is in 10.0.0.0/8"


def test_single_values_unchanged_and_awkward_ones_quoted():
    assert condition(custom("starts_with", "en")) == "locale starts with en"
    assert condition(custom("gte", 18, "age")) == "age is at least 18"
    assert condition(custom("equals", True, "beta")) == "beta is true"
    assert condition(custom("equals", "New York", "city")) == 'city is "New York"'
    assert condition(custom("contains", ["", "a,b"], "tag")) == 'tag contains "" or "a,b"'


def test_whole_sentence_has_no_brackets():
    rules = [{"type": "all", "rules": [custom("starts_with", ["en", "de"]),
                                        {"type": "geo", "operator": "not_in", "value": ["US", "CA"]}]},
             {"type": "percentage", "operator": "less_than", "value": 30}]
    sentence = describe(rules)
    assert sentence == "When (locale starts with en or de and country is not US nor CA), then 30% of users."
    assert "[" not in sentence and "'" not in sentence
