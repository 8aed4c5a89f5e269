"""Spherical geometry of ADQL's shapes as pure functions (degrees in, degrees out).

A shape is a :class:`Shape`: ``point`` (ra, dec), ``circle`` (ra, dec,
radius), ``polygon`` (ra1, dec1, ra2, dec2, ...; edges are great-circle
arcs; convex, either orientation) or ``range`` (ra1, ra2, dec1, dec2: the
RA/Dec box of SIA2's ``POS=RANGE``, ``ra1 <= ra2`` spanning at most 180 deg,
see :func:`range_pieces`; its sides at constant Dec are small circles).  :func:`contains`, :func:`intersects`
and :func:`distance` are what ADQL's CONTAINS, INTERSECTS and DISTANCE mean;
:mod:`obsflow.archive.vo.tap_sql` registers them as SQLite functions
(PostgreSQL uses pg_sphere's operators for the same shapes).  Shapes travel
through SQLite as text (:func:`encode` / :func:`decode`, which also reads the
STC-S ``POLYGON ICRS ...`` of ObsCore's ``s_region``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from obsflow.exceptions import VOQueryError

__all__ = ["Shape", "box_polygon", "contains", "decode", "distance", "encode", "intersects",
           "range_pieces"]


@dataclass(frozen=True)
class Shape:
    """``kind`` (point, circle, polygon) and its numbers in degrees."""

    kind: str
    values: tuple[float, ...]

    @property
    def vertices(self) -> np.ndarray:
        """Unit vectors (n, 3) of a point's position or a polygon's vertices."""
        v = np.asarray(self.values if self.kind != "circle" else self.values[:2], dtype=float)
        return _unit(v[0::2], v[1::2])


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle between unit vectors, degrees (atan2 form: exact for small angles)."""
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1),
                                 np.sum(u * v, axis=-1)))


def box_polygon(ra: float, dec: float, width: float, height: float) -> tuple[float, ...]:
    """ADQL BOX as the polygon of its corners (ra +- width/2, dec +- height/2), degrees."""
    w, h = width / 2, height / 2
    return (ra - w, dec - h, ra + w, dec - h, ra + w, dec + h, ra - w, dec + h)


def encode(kind: str, values: tuple[float, ...]) -> str:
    """A shape as text for SQLite (``kind v1 v2 ...``)."""
    return kind + " " + " ".join(repr(float(v)) for v in values)


_STCS = {"position": "point", "point": "point", "circle": "circle", "polygon": "polygon",
         "box": "box", "range": "range"}


def decode(text: str) -> Shape | None:
    """A shape from :func:`encode`'s text or an STC-S region; None if it is neither."""
    words = text.split()
    if not words or words[0].lower() not in _STCS:
        return None
    kind = _STCS[words[0].lower()]
    rest = words[1:]
    if rest and not _is_number(rest[0]):  # STC-S frame, e.g. ICRS
        rest = rest[1:]
    try:
        values = tuple(float(w) for w in rest)
    except ValueError:
        return None
    if kind == "box" and len(values) == 4:
        kind, values = "polygon", box_polygon(*values)
    need = {"point": 2, "circle": 3, "range": 4}
    if (kind in need and len(values) != need[kind]) or (
            kind == "polygon" and (len(values) < 6 or len(values) % 2)):
        return None
    if kind == "polygon" and len(set(zip(values[0::2], values[1::2], strict=True))) < 3:
        return Shape("point", values[:2])  # a degenerate polygon: where it is
    return Shape(kind, values)


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _edges(poly: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end and (unit) normal of each edge, the normals pointing inside."""
    v = poly.vertices
    w = np.roll(v, -1, axis=0)
    n = np.cross(v, w)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    centre = v.sum(axis=0)
    if np.sum(n @ centre) < 0:  # clockwise as seen from outside: flip
        n = -n
    return v, w, n


def _inside_polygon(points: np.ndarray, poly: Shape) -> np.ndarray:
    """Which unit vectors (m, 3) lie inside (or on) the convex polygon."""
    _, _, n = _edges(poly)
    return np.all(points @ n.T >= -1e-12, axis=-1)


def _arc_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees) from unit vector ``p`` to the great-circle arc a-b."""
    n = np.cross(a, b)
    n /= np.linalg.norm(n)
    foot = p - np.dot(p, n) * n
    if np.linalg.norm(foot) > 0:
        foot /= np.linalg.norm(foot)
        # the foot lies on the arc if it is between a and b
        if np.dot(np.cross(a, foot), n) >= 0 and np.dot(np.cross(foot, b), n) >= 0:
            return float(np.degrees(np.arcsin(min(1.0, abs(float(np.dot(p, n)))))))
    return float(min(_angle(p, a), _angle(p, b)))


def _arcs_cross(a1: np.ndarray, a2: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> bool:
    na, nb = np.cross(a1, a2), np.cross(b1, b2)
    if np.dot(nb, a1) * np.dot(nb, a2) > 0 or np.dot(na, b1) * np.dot(na, b2) > 0:
        return False
    return bool(np.dot(a1 + a2, b1 + b2) > 0)


def contains(inner: Shape, outer: Shape) -> bool:
    """True if ``inner`` lies inside ``outer`` (ADQL CONTAINS(inner, outer) = 1)."""
    if outer.kind == "point":
        return inner.kind == "point" and bool(_angle(inner.vertices[0], outer.vertices[0]) == 0)
    if outer.kind == "circle":
        centre, radius = outer.vertices[0], outer.values[2]
        if inner.kind == "circle":
            return bool(_angle(inner.vertices[0], centre) + inner.values[2] <= radius)
        return bool(np.all(_angle(inner.vertices, centre) <= radius))
    if inner.kind == "circle":
        c = inner.vertices[0]
        if not _inside_polygon(c[None], outer)[0]:
            return False
        v, w, _ = _edges(outer)
        return all(_arc_distance(c, a, b) >= inner.values[2] for a, b in zip(v, w, strict=True))
    if not bool(np.all(_inside_polygon(inner.vertices, outer))):
        return False
    if inner.kind == "point":
        return True
    return not _edges_cross(inner, outer)


def _edges_cross(p: Shape, q: Shape) -> bool:
    pv, pw, _ = _edges(p)
    qv, qw, _ = _edges(q)
    return any(_arcs_cross(a1, a2, b1, b2) for a1, a2 in zip(pv, pw, strict=True)
               for b1, b2 in zip(qv, qw, strict=True))


def range_pieces(ra1: float, ra2: float, dec1: float,
                 dec2: float) -> list[tuple[float, float, float, float]]:
    """An RA/Dec box (degrees, ``ra1 > ra2`` wraps through 0) as ``range`` shapes' values,
    each with ``ra1 <= ra2`` spanning at most 180 deg (so each is convex in RA)."""
    spans = [(ra1, ra2)] if ra1 <= ra2 else [(ra1, 360.0), (0.0, ra2)]
    out = []
    for lo, hi in spans:
        while hi - lo > 180.0:
            out.append((lo, lo + 180.0, dec1, dec2))
            lo += 180.0
        out.append((lo, hi, dec1, dec2))
    return out


def _in_range(points: np.ndarray, box: Shape) -> np.ndarray:
    """Which unit vectors (m, 3) lie in (or on) the RA/Dec box."""
    ra1, ra2, dec1, dec2 = box.values
    dec = np.degrees(np.arcsin(np.clip(points[:, 2], -1, 1)))
    ra = np.degrees(np.arctan2(points[:, 1], points[:, 0])) % 360.0
    pole = np.abs(points[:, 2]) >= 1 - 1e-15  # every RA at a pole
    in_ra = pole | ((ra >= ra1) & (ra <= ra2)) | ((ra2 >= 360.0) & (ra == 0.0))
    return np.asarray(in_ra & (dec >= dec1) & (dec <= dec2), dtype=bool)


def _range_corners(box: Shape) -> np.ndarray:
    ra1, ra2, dec1, dec2 = box.values
    return _unit(np.array([ra1, ra2, ra2, ra1]), np.array([dec1, dec1, dec2, dec2]))


def _arc_meets_parallel(a: np.ndarray, b: np.ndarray, box: Shape, dec: float) -> bool:
    """Whether the great-circle arc a-b meets the box's side at Dec ``dec``."""
    ra1, ra2 = box.values[:2]
    theta_ab = math.atan2(float(np.linalg.norm(np.cross(a, b))), float(np.dot(a, b)))
    t = b - np.dot(a, b) * a
    if np.linalg.norm(t) == 0:
        return False
    t /= np.linalg.norm(t)  # the arc: a cos(th) + t sin(th), 0 <= th <= theta_ab
    amp, phase = math.hypot(a[2], t[2]), math.atan2(t[2], a[2])
    z = math.sin(math.radians(dec))
    if amp == 0 or abs(z) > amp:
        return False
    half = math.acos(max(-1.0, min(1.0, z / amp)))
    for th in (phase - half, phase + half):
        th %= 2 * math.pi
        if th <= theta_ab + 1e-15:
            p = a * math.cos(th) + t * math.sin(th)
            ra = math.degrees(math.atan2(p[1], p[0])) % 360.0
            if ra1 <= ra <= ra2 or (ra2 >= 360.0 and ra == 0.0):
                return True
    return False


def _polygon_meets_range(poly: Shape, box: Shape) -> bool:
    """Convex polygon (or point) and RA/Dec box share a point: a vertex of one inside the
    other, or an edge of the polygon crossing a side of the box."""
    if bool(np.any(_in_range(poly.vertices, box))):
        return True
    if poly.kind == "point":
        return False
    if bool(np.any(_inside_polygon(_range_corners(box), poly))):
        return True
    ra1, ra2, dec1, dec2 = box.values
    meridians = [(_unit(np.array([ra]), np.array([dec1]))[0],
                  _unit(np.array([ra]), np.array([dec2]))[0]) for ra in (ra1, ra2)]
    v, w, _ = _edges(poly)
    for a, b in zip(v, w, strict=True):
        if any(_arcs_cross(a, b, m1, m2) for m1, m2 in meridians):
            return True
        if any(_arc_meets_parallel(a, b, box, dec) for dec in (dec1, dec2) if abs(dec) < 90):
            return True
    return False


def intersects(a: Shape, b: Shape) -> bool:
    """True if ``a`` and ``b`` share at least one point (ADQL INTERSECTS).

    A ``range`` is compared with points and polygons only."""
    if a.kind == "range":
        a, b = b, a
    if b.kind == "range":
        if a.kind not in ("point", "polygon"):
            raise VOQueryError("a RANGE is compared with points and polygons only")
        return _polygon_meets_range(a, b)
    if a.kind == "point":
        return contains(a, b)
    if b.kind == "point":
        return contains(b, a)
    if a.kind == "circle" and b.kind == "circle":
        return bool(_angle(a.vertices[0], b.vertices[0]) <= a.values[2] + b.values[2])
    if b.kind == "circle":
        a, b = b, a
    if a.kind == "circle":  # circle and polygon
        c = a.vertices[0]
        if _inside_polygon(c[None], b)[0]:
            return True
        v, w, _ = _edges(b)
        return any(_arc_distance(c, p, q) <= a.values[2] for p, q in zip(v, w, strict=True))
    return bool(np.any(_inside_polygon(a.vertices, b)) or np.any(_inside_polygon(b.vertices, a))
                or _edges_cross(a, b))


def distance(a: Shape, b: Shape) -> float:
    """Angle between two points (or circles' centres), degrees."""
    return float(_angle(a.vertices[0], b.vertices[0]))


def sqlite_functions() -> dict[str, tuple[int, object]]:
    """``name -> (number of arguments, function)`` to register on a SQLite connection
    (-1: any number).  Each returns None (SQL NULL) for NULL or malformed input."""

    def shape(kind: str) -> object:
        def make(*values: float | None) -> str | None:
            if any(v is None or not isinstance(v, int | float) or not math.isfinite(v)
                   for v in values):
                return None
            nums = tuple(float(v) for v in values)  # type: ignore[arg-type]
            if kind == "box":
                return encode("polygon", box_polygon(*nums))
            return encode(kind, nums)
        return make

    def binary(op: object, to_int: bool = True) -> object:
        def call(a: str | None, b: str | None) -> float | int | None:
            sa = decode(a) if isinstance(a, str) else None
            sb = decode(b) if isinstance(b, str) else None
            if sa is None or sb is None:
                return None
            value = op(sa, sb)  # type: ignore[operator]
            return int(value) if to_int else float(value)
        return call

    def coord(index: int) -> object:
        def call(a: str | None) -> float | None:
            s = decode(a) if isinstance(a, str) else None
            return None if s is None or s.kind != "point" else s.values[index]
        return call

    return {"obsflow_point": (2, shape("point")), "obsflow_circle": (3, shape("circle")),
            "obsflow_box": (4, shape("box")), "obsflow_polygon": (-1, shape("polygon")),
            "obsflow_contains": (2, binary(contains)),
            "obsflow_intersects": (2, binary(intersects)),
            "obsflow_distance": (2, binary(distance, to_int=False)),
            "obsflow_coord1": (1, coord(0)), "obsflow_coord2": (1, coord(1))}
