"""The mfad.v1 servicers: one module per service, each a thin translation to the core.

A servicer method checks nothing the core decides: it turns the request into
core arguments (through :mod:`mfad.api.convert`), calls one core use case and
maps the result back through that module's one table. Methods a build does not
serve yet are simply
not overridden: the generated base class raises and the interceptor answers
UNIMPLEMENTED. To add one, define the method on the servicer class (or a
subclass) -- :func:`mfad.api.servicers.base.binding` registers whatever the
class defines, with the same input checks for every method.
"""

from mfad.api.servicers.admin import AdminServicer
from mfad.api.servicers.authentication import AuthenticationServicer
from mfad.api.servicers.base import binding
from mfad.api.servicers.enrollment import EnrollmentServicer

__all__ = ["AdminServicer", "AuthenticationServicer", "EnrollmentServicer", "binding"]
