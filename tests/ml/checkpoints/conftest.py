"""The checkpoint room's tests use the tiny networks of every architecture the model tests use."""

from ..models.conftest import TINY, arch, make_net  # noqa: F401  (fixtures re-used, not redefined)
