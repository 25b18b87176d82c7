"""``{% load django_ws %}`` then ``{% reverse_ws 'chat' room='x' %}``.

Works like Django's ``{% url %}``: positional and keyword arguments, and
``... as var`` to store the URL instead of printing it (in which case a route
that does not reverse leaves ``var`` empty rather than raising).
"""

from django import template
from django.urls import NoReverseMatch
from django.utils.html import conditional_escape

from django_ws.routing import reverse_ws as _reverse_ws

register = template.Library()


class ReverseWsNode(template.Node):
    def __init__(self, name, args, kwargs, asvar):
        self.name, self.args, self.kwargs, self.asvar = name, args, kwargs, asvar

    def render(self, context):
        name = self.name.resolve(context)
        args = [arg.resolve(context) for arg in self.args]
        kwargs = {key: value.resolve(context) for key, value in self.kwargs.items()}
        try:
            # A relative WS_BASE_URL takes its scheme and host from the page's request.
            url = _reverse_ws(name, args=args or None, kwargs=kwargs or None, request=context.get("request"))
        except NoReverseMatch:
            if self.asvar is None:
                raise
            url = ""
        if self.asvar:
            context[self.asvar] = url
            return ""
        return conditional_escape(url) if context.autoescape else url


@register.tag(name="reverse_ws")
def do_reverse_ws(parser, token):
    bits = token.split_contents()
    if len(bits) < 2:
        raise template.TemplateSyntaxError(
            f"'{bits[0]}' takes at least one argument, the name of a websocket route"
        )
    name = parser.compile_filter(bits[1])
    asvar = None
    bits = bits[2:]
    if len(bits) >= 2 and bits[-2] == "as":
        asvar = bits[-1]
        bits = bits[:-2]
    args, kwargs = [], {}
    for bit in bits:
        key, sep, value = bit.partition("=")
        if sep and key.isidentifier():
            kwargs[key] = parser.compile_filter(value)
        else:
            if kwargs:
                raise template.TemplateSyntaxError("positional arguments cannot follow keyword arguments")
            args.append(parser.compile_filter(bit))
    return ReverseWsNode(name, args, kwargs, asvar)
