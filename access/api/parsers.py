"""The JSON parser every API view uses."""

import codecs

from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json


class JSONParser(parsers.JSONParser):
    """DRF's parser, except that a body nested deeper than Python's recursion limit is a 400 `parse_error` like
    any other undecodable body (DRF lets the RecursionError through, a 500), and the messages are translated."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            return json.load(
                codecs.getreader(encoding)(stream), parse_constant=json.strict_constant if self.strict else None
            )
        except RecursionError:
            raise ParseError(_("The JSON in the request body is nested too deeply.")) from None
        except ValueError as exc:
            raise ParseError(_("The request body is not valid JSON: %(error)s") % {"error": exc}) from None
