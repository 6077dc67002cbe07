"""Pydantic's own refusal messages (schemas' types and bounds) and composed refusals.

Pydantic writes these in English with the bound in the text ("String should have at most 200
characters"); :mod:`tongdao.messages` matches them as templates. The test that feeds real bad
input through pydantic (tests/unit/test_messages.py) fails when pydantic's wording changes.
"""

from __future__ import annotations

from tongdao.web.i18n import N_

PYDANTIC_MESSAGES = [
    N_("Field required"),
    N_("String should have at least %(min_length)s character"),
    N_("String should have at least %(min_length)s characters"),
    N_("String should have at most %(max_length)s character"),
    N_("String should have at most %(max_length)s characters"),
    N_("String should match pattern '%(pattern)s'"),
    N_("Input should be a valid string"),
    N_("Input should be a valid integer"),
    N_("Input should be a valid integer, unable to parse string as an integer"),
    N_("Input should be a valid integer, got a number with a fractional part"),
    N_("Input should be a valid number"),
    N_("Input should be a valid number, unable to parse string as a number"),
    N_("Input should be a valid decimal"),
    N_("Input should be greater than or equal to %(ge)s"),
    N_("Input should be less than or equal to %(le)s"),
    N_("Input should be greater than %(gt)s"),
    N_("Input should be less than %(lt)s"),
    N_("Input should be a valid UUID, %(error)s"),
    N_("Input should be %(expected)s"),
    N_("Input should be a valid boolean"),
    N_("Input should be a valid boolean, unable to interpret input"),
    N_("Input should be a valid datetime, %(error)s"),
    N_("Input should be a valid datetime or date, %(error)s"),
    N_("Input should be a valid date, %(error)s"),
    N_("Input should be a valid date or datetime, %(error)s"),
    N_("Input should have timezone info"),
    N_("Input should be a valid list"),
    N_("Input should be a valid dictionary"),
    N_("Input should be a valid dictionary or object to extract fields from"),
    N_("List should have at least %(min_length)s item after validation, not %(actual)s"),
    N_("List should have at least %(min_length)s items after validation, not %(actual)s"),
    N_("List should have at most %(max_length)s item after validation, not %(actual)s"),
    N_("List should have at most %(max_length)s items after validation, not %(actual)s"),
    N_("Extra inputs are not permitted"),
    N_("value is not a valid email address: %(reason)s"),
    N_("value is not a valid IPv4 or IPv6 address"),
    N_("value is not a valid IPv4 or IPv6 network"),
    N_("UUID input should be a string, bytes or UUID object"),
]

# Refusals composed from parts where they are raised (the scan of the services sees only
# their parts): a rule's refusal, and the access guard's.
COMPOSED_MESSAGES = [
    N_("%(detail)s (rule %(rule)s: %(text)s; source: %(source)s)"),
    N_("your roles do not allow %(action)s on %(resource)s"),
    N_("your roles do not allow %(action)s on %(resource)s (this token is read-only)"),
    # A bug's answer (the API's and the console's 500).
    N_("the server failed; the failure is logged"),
    # What the log-retention rule refuses to do with records that are too young.
    N_("purged"),
    N_("erased"),
]
