"""Request handlers of the contact-metrics endpoints, OAuth and stats."""

from typing import Any

from aiohttp import web

from harvester.sandbox.params import (
    RangeQuery,
    SeriesQuery,
    is_well_formed_item_id,
    parse_ids,
    parse_range_query,
    parse_series_query,
)
from harvester.sandbox.responses import bad_request, json_response, not_found
from harvester.sandbox.series import (
    SeriesStyle,
    item_bucket_values,
    render_series,
    seller_bucket_values,
)
from harvester.sandbox.state import SandboxState, get_state
from harvester.sandbox.traffic import METRICS
from harvester.sandbox.window import Window, build_window


async def item_range_total(request: web.Request) -> web.Response:
    state = get_state(request)
    metric = _metric(request)
    query = parse_range_query(request.query, state.settings, _offset(state))
    item_id = _known_item(state, request.match_info["item_id"])
    total = state.traffic.range_total(
        item_id, metric, query.start, query.end, state.clock()
    )
    state.stats.record_ids_served(1)
    return json_response(_range_body(query, "item_id", item_id, total))


async def user_range_total(request: web.Request) -> web.Response:
    state = get_state(request)
    metric = _metric(request)
    query = parse_range_query(request.query, state.settings, _offset(state))
    user_id = _known_seller(state, request.match_info["user_id"])
    total = state.traffic.seller_range_total(
        user_id, metric, query.start, query.end, state.clock()
    )
    return json_response(_range_body(query, "user_id", user_id, total))


def _range_body(
    query: RangeQuery, owner_key: str, owner_id: str, total: int
) -> dict[str, Any]:
    """Build a range-total body that echoes date_from and date_to as received."""
    return {
        "date_from": query.date_from_text,
        "date_to": query.date_to_text,
        owner_key: owner_id,
        "total": total,
    }


async def item_series(request: web.Request) -> web.Response:
    """Serve one item's series, or several when the `ids` parameter is present."""
    if "ids" in request.query:
        return await multi_item_series(request)
    state = get_state(request)
    metric = _metric(request)
    query = _series_query(state, request)
    item_id = _known_item(state, request.match_info["item_id"])
    window = _window(state, query)
    return json_response(_item_series_body(state, item_id, metric, window, query))


async def multi_item_series(request: web.Request) -> web.Response:
    """Serve one series per id in `ids`, handling unknown ids per `unknown_id`."""
    state = get_state(request)
    metric = _metric(request)
    ids = parse_ids(request.query.get("ids", ""), state.settings.max_ids)
    query = _series_query(state, request)
    if state.settings.unknown_id == "reject":
        _reject_unknown_ids(state, ids)
    window = _window(state, query)
    bodies = [_entry(state, item_id, metric, window, query) for item_id in ids]
    present = [body for body in bodies if body is not None]
    if state.settings.single_object and len(ids) == 1 and len(present) == 1:
        return json_response(present[0])
    return json_response(present)


async def user_series(request: web.Request) -> web.Response:
    state = get_state(request)
    metric = _metric(request)
    query = _series_query(state, request)
    user_id = _known_seller(state, request.match_info["user_id"])
    window = _window(state, query)
    values = seller_bucket_values(state.traffic, user_id, metric, window, state.clock())
    body = render_series("user_id", user_id, window, values, _style(state, query))
    return json_response(body)


async def oauth_token(request: web.Request) -> web.Response:
    state = get_state(request)
    form = await request.post()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    return json_response(state.oauth.refresh(fields))


async def sandbox_stats(request: web.Request) -> web.Response:
    return json_response(get_state(request).stats.as_dict())


def _entry(
    state: SandboxState, item_id: str, metric: str, window: Window, query: SeriesQuery
) -> dict[str, Any] | None:
    """Return the item's series, its not-found entry, or None when it is omitted."""
    if _is_known_item(state, item_id):
        return _item_series_body(state, item_id, metric, window, query)
    if state.settings.unknown_id == "entry":
        return {
            "item_id": item_id,
            "error": "not_found",
            "status": 404,
            "message": f"item {item_id} not found",
        }
    return None


def _item_series_body(
    state: SandboxState, item_id: str, metric: str, window: Window, query: SeriesQuery
) -> dict[str, Any]:
    values = item_bucket_values(state.traffic, item_id, metric, window, state.clock())
    state.stats.record_ids_served(1)
    return render_series("item_id", item_id, window, values, _style(state, query))


def _reject_unknown_ids(state: SandboxState, ids: list[str]) -> None:
    for item_id in ids:
        if not is_well_formed_item_id(item_id):
            raise bad_request(
                f"invalid item id {item_id!r}: expected three capital letters "
                "and digits, like MLA600000000"
            )
        if not state.traffic.is_known(item_id):
            raise bad_request(f"item {item_id} not found")


def _is_known_item(state: SandboxState, item_id: str) -> bool:
    return is_well_formed_item_id(item_id) and state.traffic.is_known(item_id)


def _known_item(state: SandboxState, item_id: str) -> str:
    if not _is_known_item(state, item_id):
        raise not_found("item not found")
    return item_id


def _known_seller(state: SandboxState, user_id: str) -> str:
    if not state.traffic.is_known_seller(user_id):
        raise not_found("user not found")
    return user_id


def _metric(request: web.Request) -> str:
    metric = request.match_info["metric"]
    if metric not in METRICS:
        raise not_found(f"metric {metric!r} not found: use questions or phone_views")
    return metric


def _offset(state: SandboxState) -> int:
    return state.traffic.day_offset_hours


def _series_query(state: SandboxState, request: web.Request) -> SeriesQuery:
    return parse_series_query(
        request.query, state.settings, _offset(state), state.clock()
    )


def _window(state: SandboxState, query: SeriesQuery) -> Window:
    try:
        return build_window(
            query.unit,
            query.last,
            query.ending,
            _offset(state),
            state.settings.extra_bucket,
        )
    except OverflowError:
        raise bad_request(
            "the requested window is outside the supported dates"
        ) from None


def _style(state: SandboxState, query: SeriesQuery) -> SeriesStyle:
    settings = state.settings
    return SeriesStyle(
        day_label=settings.day_label,
        day_offset_hours=_offset(state),
        sparse=settings.sparse,
        last_as_string=settings.last_as_string,
        descending=query.descending,
        shuffle_rng=state.shuffle_rng if settings.shuffle else None,
    )
