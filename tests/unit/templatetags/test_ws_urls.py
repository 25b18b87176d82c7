"""{% load django_ws %}{% reverse_ws ... %}, rendered with the settings' template engine."""

import pytest
from django.template import Context, Template, TemplateSyntaxError
from django.test import override_settings
from django.urls import NoReverseMatch


def render(source, **context):
    return Template("{% load django_ws %}" + source).render(Context(context))


def test_reverse_ws_tag_prints_the_absolute_url():
    assert render("{% reverse_ws 'echo' %}") == "ws://testserver:8888/socket/echo"


def test_reverse_ws_tag_with_keyword_argument():
    assert render("{% reverse_ws 'open' result='true' %}") == "ws://testserver:8888/socket/open/true"


def test_reverse_ws_tag_with_variable_keyword_argument():
    assert render("{% reverse_ws 'open' result=r %}", r="false") == "ws://testserver:8888/socket/open/false"


def test_reverse_ws_tag_with_positional_argument():
    assert render("{% reverse_ws 'open' 'none' %}") == "ws://testserver:8888/socket/open/none"


def test_reverse_ws_tag_with_variable_route_name_and_namespace():
    assert render("{% reverse_ws name pk=pk %}", name="shop:item", pk=5) == "ws://testserver:8888/socket/shop/item/5"


def test_reverse_ws_tag_follows_ws_base_url():
    with override_settings(WS_BASE_URL="wss://example.com/ws/"):
        assert render("{% reverse_ws 'echo' %}") == "wss://example.com/ws/echo"


def test_reverse_ws_tag_as_var_stores_instead_of_printing():
    out = render("{% reverse_ws 'open' result='true' as url %}[{{ url }}]")
    assert out == "[ws://testserver:8888/socket/open/true]"


def test_reverse_ws_tag_unknown_name_raises_without_as():
    with pytest.raises(NoReverseMatch):
        render("{% reverse_ws 'nope' %}")


def test_reverse_ws_tag_bad_kwargs_raise_without_as():
    with pytest.raises(NoReverseMatch):
        render("{% reverse_ws 'open' result='maybe' %}")


def test_reverse_ws_tag_unknown_name_with_as_gives_empty_string():
    assert render("{% reverse_ws 'nope' as url %}[{{ url }}]") == "[]"


def test_reverse_ws_tag_without_arguments_is_a_syntax_error():
    with pytest.raises(TemplateSyntaxError, match="at least one argument"):
        render("{% reverse_ws %}")


def test_reverse_ws_tag_positional_after_keyword_is_a_syntax_error():
    with pytest.raises(TemplateSyntaxError, match="positional arguments cannot follow keyword"):
        render("{% reverse_ws 'open' result='true' 'x' %}")


def test_a_relative_ws_base_url_takes_scheme_and_host_from_the_request(rf):
    with override_settings(WS_BASE_URL="/socket", ALLOWED_HOSTS=["example.com"]):
        plain = rf.get("/", HTTP_HOST="example.com")
        assert render("{% reverse_ws 'echo' %}", request=plain) == "ws://example.com/socket/echo"
        secure = rf.get("/", HTTP_HOST="example.com", secure=True)
        assert render("{% reverse_ws 'echo' %}", request=secure) == "wss://example.com/socket/echo"
        assert render("{% reverse_ws 'echo' %}") == "/socket/echo", "no request: the URL stays relative"
