"""Projections dispatch on the event's wire tag; every ``on_*`` handler names a real event tag."""

from __future__ import annotations

import msgspec
import pytest

from projections import PROJECTIONS
from projections.base import BaseProjection, handler_tag
from projections.journal import Journal, JournalProjection
from streams import codec
from streams import events as ev


class _NoStages:
    curriculum = None


def _all_projection_classes() -> list[type]:
    for factory in PROJECTIONS.values():
        factory(_NoStages())  # every registered projection is built (and so imported)
    found, todo = [], list(BaseProjection.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_handler_of_every_projection_names_a_real_event_tag():
    classes = _all_projection_classes()
    assert {type(f(_NoStages())) for f in PROJECTIONS.values()} <= set(classes)
    checked = 0
    for cls in classes:
        handlers = [a for a in dir(cls) if a.startswith("on_") and callable(getattr(cls, a))]
        for attr in handlers:
            tag = handler_tag(attr)
            assert tag in codec.BY_TAG, f"{cls.__name__}.{attr} names no event type"
            assert cls.handlers[tag] == attr
            checked += 1
        assert len(cls.handlers) == len(handlers)
    assert checked >= 20  # the registry, journal, matches, pool, status ... all looked at


def test_a_handler_naming_no_event_type_fails_where_the_class_is_defined():
    with pytest.raises(TypeError, match="on_candidate_promotd names no event type"):
        class Misspelt(BaseProjection[int]):
            def on_candidate_promotd(self, s, e):
                return s


def test_a_handler_named_after_the_python_class_is_refused():
    """One spelling: the wire tag. A class-name handler would silently stop folding on a rename."""
    with pytest.raises(TypeError, match="names no event type"):
        class ByClassName(BaseProjection[int]):
            def on_CandidatePromoted(self, s, e):
                return s


def test_method_names_derived_from_tags_are_unambiguous():
    names = {tag.replace(".", "_") for tag in codec.BY_TAG}
    assert len(names) == len(codec.BY_TAG)


def test_dispatch_follows_the_wire_tag_not_the_python_class():
    class Renamed(ev.EventRejected, frozen=True, kw_only=True, tag="event.rejected"):
        """The same wire type under another Python name (a rename, a subclass)."""

    event = Renamed(id="x", time=1.0, run="r", stream="EVENTS", subject="s", seq=3, reason="junk")
    state = JournalProjection().apply(Journal(), event)
    assert state.poison_count == 1
    unknown = codec.UnknownEvent(type="event.rejected_v9", id="u", run="r")
    assert JournalProjection().apply(state, unknown) is state  # no tag a handler folds: unchanged
    rejected = msgspec.msgpack.decode(msgspec.msgpack.encode(event), type=ev.EventRejected)
    assert JournalProjection().apply(Journal(), rejected) == state
