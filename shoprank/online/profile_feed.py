"""The feedback log feeds the online profile store; `forget` erases a shopper from both.

A shopper's behaviour is what the log holds under their pseudonym: the queries they typed
(impressions) and the products they clicked, carted or bought (events joined to the shown
row's text). Feeding is incremental: pass `since` (unix seconds) to add only newer behaviour.
"""
from __future__ import annotations

from pathlib import Path

from ..data.pseudonym import DEFAULT_KEY_FILE, load_or_create_key, pseudonym
from ..serving.profiles import Behaviour, ProfileStore
from .feedback import erase_user, read_frames


def behaviour_from_log(feedback_db: str | Path, since: float | None = None) -> dict[str, list[Behaviour]]:
    """{pseudonym: [Behaviour, ...]} from the feedback log (impressions with ts >= since)."""
    return behaviour_from_frames(*read_frames(feedback_db, since=since))


def behaviour_from_frames(imps, shown, events) -> dict[str, list[Behaviour]]:
    """behaviour_from_log for frames already read (feedback.read_frames)."""
    out: dict[str, list[Behaviour]] = {}
    imps = imps[imps["user_id"].notna()]
    for user, ts, query in zip(imps["user_id"], imps["ts"], imps["query"]):
        out.setdefault(user, []).append(Behaviour(float(ts), "query", str(query)))
    if len(events) and len(imps):
        acted = events.merge(shown[["request_id", "position", "text"]], on=["request_id", "position"]) \
                      .merge(imps[["request_id", "user_id"]], on="request_id")
        for user, ts, kind, text in zip(acted["user_id"], acted["ts"], acted["kind"], acted["text"]):
            out.setdefault(user, []).append(Behaviour(float(ts), str(kind), str(text)))
    return out


def feed_profiles(feedback_db: str | Path, store: ProfileStore, since: float | None = None) -> dict:
    """Add the log's behaviour (since `since`) to the store; counts of shoppers and events."""
    behaviour = behaviour_from_log(feedback_db, since)
    for user, events in behaviour.items():
        store.add(user, events)
    return {"shoppers": len(behaviour), "events": sum(len(e) for e in behaviour.values())}


def forget(user_id: str, feedback_db: str | Path, store: ProfileStore,
           key_file: str | Path = DEFAULT_KEY_FILE) -> dict:
    """Right to erasure for the id the caller knows the shopper by: the profile and every
    feedback row stored under the shopper's pseudonym."""
    user = pseudonym(user_id, load_or_create_key(key_file))
    if user is None:
        raise ValueError("forget needs a non-empty user id")
    erased = {"profile_events": store.forget(user)}
    if Path(feedback_db).exists():
        erased.update(erase_user(feedback_db, user))
    return erased
