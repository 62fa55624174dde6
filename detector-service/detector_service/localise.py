"""Garment regions from body keypoints and the person mask (pure geometry, no model).

Coordinates are normalised to the whole image: x to its width, y to its height. A region is only
emitted when the keypoints it needs are inside the frame and seen with enough confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from shared.boxes import clip_box
from shared.colours import dominant_colour
from shared.contracts import Region, View

NOSE = 0
LEFT_EYE, RIGHT_EYE = 2, 5
LEFT_EAR, RIGHT_EAR = 7, 8
MOUTH_LEFT, MOUTH_RIGHT = 9, 10
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12
LEFT_ELBOW, RIGHT_ELBOW = 13, 14
LEFT_WRIST, RIGHT_WRIST = 15, 16
# wrists, then the little fingers, index fingers and thumbs
HAND_POINTS = (LEFT_WRIST, RIGHT_WRIST, 17, 18, 19, 20, 21, 22)
LEFT_HIP, RIGHT_HIP = 23, 24
LEFT_KNEE, RIGHT_KNEE = 25, 26
LEFT_ANKLE, RIGHT_ANKLE = 27, 28
LEFT_HEEL, RIGHT_HEEL = 29, 30
LEFT_TOE, RIGHT_TOE = 31, 32
FACE_POINTS = (NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR, MOUTH_LEFT, MOUTH_RIGHT)
FACE_SKIN_POINTS = (NOSE, LEFT_EYE, RIGHT_EYE, MOUTH_LEFT, MOUTH_RIGHT)  # not the ears: hair covers them
SHOULDERS = (LEFT_SHOULDER, RIGHT_SHOULDER)
HIPS = (LEFT_HIP, RIGHT_HIP)
LEGS = ((LEFT_HIP, LEFT_KNEE, LEFT_ANKLE), (RIGHT_HIP, RIGHT_KNEE, RIGHT_ANKLE))
FEET = ((LEFT_ANKLE, LEFT_HEEL, LEFT_TOE), (RIGHT_ANKLE, RIGHT_HEEL, RIGHT_TOE))

# Body proportions in torso lengths (shoulder line to hip line), from adult anthropometry.
NECKLINE_ABOVE_SHOULDERS = 0.2
TOP_HEM_BELOW_HIPS = 0.12
WAISTBAND_ABOVE_HIPS = 0.3
TROUSER_HEM_BELOW_ANKLES = 0.06
MASK_THRESHOLD = 0.5
# around a face or hand point, pixels of the work image either side (a patch inside the smallest
# face the detector reports): skin there is what tells a person from a garment posed as one
BARE_SKIN_RADIUS = 3
PROFILE_SHOULDER_SPAN = 0.45  # shoulders seen edge-on span less than this many torso lengths
PROFILE_HEAD_YAW = 0.4  # nose off the middle of the ears by this share of their span: a turned head
# An open jacket or coat shows the top under it down the middle of the chest: a centre line whose
# colour differs by this much (RGB distance of patch means) from both fronts, which are alike.
INNER_CONTRAST = 60.0
INNER_FRONTS = 0.6  # the fronts are read this share of the half shoulder width off the centre line
INNER_MIN_RUN = 0.1  # of the torso length: a shorter strip is a zip, a button placket or a print
INNER_BELOW_COLLAR = 0.15  # of the torso length below the shoulder line: where the strip must begin
INNER_MIN_WIDTH = 0.4  # of the half shoulder width: a narrower strip is a zip or a stripe


@dataclass(frozen=True)
class Landmarks:
    """33 BlazePose keypoints: ``xy`` normalised (N, 2), ``visibility`` in 0..1 (N,)."""

    xy: np.ndarray
    visibility: np.ndarray
    min_visibility: float = 0.5

    def inside(self, index: int) -> bool:
        x, y = self.xy[index]
        return bool(0 <= x < 1 and 0 <= y < 1)

    def usable(self, index: int) -> bool:
        x, y = self.xy[index]
        inside = -0.01 <= x <= 1.01 and -0.01 <= y <= 1.01
        return bool(inside and self.visibility[index] >= self.min_visibility)

    def all_usable(self, indices: tuple[int, ...]) -> bool:
        return all(self.usable(i) for i in indices)

    def mean_xy(self, indices: tuple[int, ...]) -> np.ndarray:
        return np.asarray(self.xy[list(indices)].mean(axis=0))

    def score(self, indices: tuple[int, ...]) -> float:
        return float(np.mean(self.visibility[list(indices)]))

    def count_usable(self) -> int:
        return sum(self.usable(i) for i in range(len(self.visibility)))


@dataclass
class RegionBox:
    region: Region
    box: list[float]
    score: float
    colour: str | None = None
    # the colour around which its garment's pixels are picked, where the box holds others too (the
    # lapels of a jacket beside the top under it)
    reference: np.ndarray | None = None


@dataclass
class PersonLayout:
    box: list[float]
    face_box: list[float] | None
    full_shot: bool
    view: View
    keypoints_visible: int
    score: float
    regions: list[RegionBox] = field(default_factory=list)
    # the most skin around a face or seen hand point (Localiser.bare_skin): 0..1
    bare_skin: float = 1.0


class Localiser:
    """Turns one person's keypoints, mask and pixels into garment regions."""

    def __init__(self, image: np.ndarray, mask: np.ndarray | None) -> None:
        self.image = image
        self.height, self.width = image.shape[:2]
        self.mask = mask if mask is not None and mask.shape == image.shape[:2] else None
        self.person = self.mask > MASK_THRESHOLD if self.mask is not None else None
        self.skin = np.zeros(image.shape[:2], dtype=bool)  # set by layout, once the face is known
        self._smooth: np.ndarray | None = None

    def layout(self, lm: Landmarks, colours: bool = True) -> PersonLayout:
        """The person's garment regions; ``colours`` names each region's colour (skippable where the
        caller knows it, as catalog ingestion does)."""
        face = self._face_from_landmarks(lm)
        ycrcb = cv2.cvtColor(self.image, cv2.COLOR_RGB2YCrCb)
        any_tone = skin_rule(ycrcb)
        self.skin = skin_mask(ycrcb, any_tone, face)
        torso = self._torso_length(lm)
        split = self._torso_split(lm, torso)
        upper = self._upper(lm, torso, split)
        lower = self._lower(lm, torso, split)
        feet = self._feet(lm, torso)
        inner = self._inner(lm, torso) if upper is not None else None
        regions = [found for found in (upper, inner, lower, feet) if found is not None]
        if upper is not None and lower is not None and split is None:
            # one garment from the shoulders down, with no colour change at the waist: maybe a dress
            full = [
                min(upper.box[0], lower.box[0]),
                upper.box[1],
                max(upper.box[2], lower.box[2]),
                lower.box[3],
            ]
            regions.append(RegionBox(Region.full, clip_box(full), min(upper.score, lower.score)))
        for region in regions if colours else []:
            region.colour = self._garment_colour(region.box, region.reference)
        return PersonLayout(
            box=self._person_box(lm, face),
            face_box=face,
            full_shot=self._head_in_frame(lm) and self._feet_in_frame(lm),
            view=self._view(lm, torso, face_seen=lm.all_usable((NOSE, LEFT_EYE, RIGHT_EYE))),
            keypoints_visible=lm.count_usable(),
            score=lm.score(SHOULDERS + HIPS),
            regions=regions,
            bare_skin=self.bare_skin(lm, any_tone),
        )

    def bare_skin(self, lm: Landmarks, skin: np.ndarray) -> float:
        """The largest share of skin (``skin``: any tone's) around a face point in the frame or a
        seen hand point. A person shows skin at one or the other; a garment BlazePose takes for a
        person (laid flat, on a hanger, on a ghost mannequin) shows fabric or background there. A
        colour cast (a lamp, a shop's lights) can take skin out of the rule: short of skin
        everywhere, the points are looked at again once the cast is taken away (grey world)."""
        share = self._skin_at(lm, skin)
        if share < 1.0:
            without_cast = skin_rule(cv2.cvtColor(grey_world(self.image), cv2.COLOR_RGB2YCrCb))
            share = max(share, self._skin_at(lm, without_cast))
        return share

    def _skin_at(self, lm: Landmarks, skin: np.ndarray) -> float:
        points = [i for i in FACE_SKIN_POINTS if lm.inside(i)] + [i for i in HAND_POINTS if lm.usable(i)]
        shares = [0.0]
        for index in points:
            cx, cy = (int(v) for v in self._to_pixels(lm.xy[index]))
            rows = slice(max(cy - BARE_SKIN_RADIUS, 0), cy + BARE_SKIN_RADIUS + 1)
            cols = slice(max(cx - BARE_SKIN_RADIUS, 0), cx + BARE_SKIN_RADIUS + 1)
            patch = skin[rows, cols]
            shares.append(float(patch.mean()) if patch.size else 0.0)
        return max(shares)

    # --- body measures -------------------------------------------------------------------------

    def _to_pixels(self, xy: np.ndarray) -> np.ndarray:
        return np.asarray(xy) * np.array([self.width, self.height])

    def _torso_length(self, lm: Landmarks) -> float:
        """Shoulder line to hip line in normalised height units (predicted hips even out of frame)."""
        shoulders, hips = self._to_pixels(lm.mean_xy(SHOULDERS)), self._to_pixels(lm.mean_xy(HIPS))
        length = float(np.linalg.norm(hips - shoulders))
        shoulder_width = float(np.linalg.norm(self._to_pixels(lm.xy[LEFT_SHOULDER] - lm.xy[RIGHT_SHOULDER])))
        length = max(length, 1.2 * shoulder_width)
        return length / self.height

    def _mask_extent(self, y1: float, y2: float, x_min: float, x_max: float) -> tuple[float, float] | None:
        """Columns the person mask covers between rows y1..y2, within x_min..x_max."""
        if self.mask is None:
            return None
        r1, r2 = int(max(y1, 0) * self.height), int(min(y2, 1) * self.height)
        c1, c2 = int(max(x_min, 0) * self.width), int(min(x_max, 1) * self.width)
        if r2 - r1 < 2 or c2 - c1 < 2:
            return None
        band = self.mask[r1:r2, c1:c2] > MASK_THRESHOLD
        occupancy = band.mean(axis=0)
        columns = np.flatnonzero(occupancy >= 0.06)
        if columns.size == 0:
            return None
        return (c1 + columns[0]) / self.width, (c1 + columns[-1] + 1) / self.width

    def _x_range(
        self, lm: Landmarks, points: tuple[int, ...], y1: float, y2: float, pad: float
    ) -> tuple[float, float]:
        """Horizontal extent: keypoints padded, tightened to the person mask when there is one."""
        xs = [lm.xy[i][0] for i in points if lm.usable(i)] or [lm.xy[i][0] for i in points]
        pad_x = pad * self.height / self.width
        x_min, x_max = min(xs) - pad_x, max(xs) + pad_x
        extent = self._mask_extent(y1, y2, x_min, x_max)
        if extent is not None and extent[1] - extent[0] > 0.3 * (x_max - x_min):
            return extent
        return x_min, x_max

    # --- regions -------------------------------------------------------------------------------

    def _upper(self, lm: Landmarks, torso: float, split: float | None) -> RegionBox | None:
        if not lm.all_usable(SHOULDERS):
            return None
        y1 = float(min(lm.xy[i][1] for i in SHOULDERS)) - NECKLINE_ABOVE_SHOULDERS * torso
        hip_y = float(max(lm.xy[i][1] for i in HIPS))
        y2 = split if split is not None else hip_y + TOP_HEM_BELOW_HIPS * torso
        arm_points = (LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_HIP, RIGHT_HIP)
        x1, x2 = self._x_range(lm, arm_points, y1, min(y2, 1.0), pad=0.15 * torso)
        box = self._tighten([x1, y1, x2, y2], keep_bottom=split is not None)
        for wrist in self._sleeved_wrists(lm):
            # a long sleeve is part of the top: the box reaches the cuff
            pad = 0.04 * torso
            box = [
                min(box[0], wrist[0] - pad),
                box[1],
                max(box[2], wrist[0] + pad),
                max(box[3], wrist[1] + pad),
            ]
        score = lm.score(SHOULDERS + (HIPS if lm.all_usable(HIPS) else ()))
        return RegionBox(Region.upper_body, clip_box(box), score)

    def _inner(self, lm: Landmarks, torso: float) -> RegionBox | None:
        """The top under an open jacket or coat, when one shows: a strip down the middle of the
        chest, from the collar, unlike the two fronts beside it (which are like each other) and not
        skin. Whether the upper garment is outerwear is for the classifier to say; a printed
        T-shirt passes this test too, and is then dropped."""
        left, right = lm.xy[LEFT_SHOULDER], lm.xy[RIGHT_SHOULDER]
        half = float(left[0] - right[0]) / 2  # positive when the chest faces the camera
        if half * self.width < 0.5 * PROFILE_SHOULDER_SPAN * torso * self.height:
            return None  # seen from the back or edge-on
        top, bottom = lm.mean_xy(SHOULDERS), lm.mean_xy(HIPS)  # hips out of frame are predicted
        ts = np.linspace(-0.1, 0.9, 31)  # down the centre line, in torso lengths from the shoulders
        points = [top + (bottom - top) * t for t in ts]
        layers = [self._layer_at(point, half) for point in points]
        # it shows from the neck opening down; a strip that starts lower is a print or a highlight
        run = _first_run(
            [layer is not None for layer in layers], before=int(np.searchsorted(ts, INNER_BELOW_COLLAR))
        )
        if run is None or ts[run[1] - 1] - ts[run[0]] < INNER_MIN_RUN - 1e-6:
            return None
        found = [(points[i], layers[i]) for i in range(*run)]
        spans = [self._layer_span(point, half, layer) for point, layer in found if layer is not None]
        x1, x2 = min(s[0] for s in spans), max(s[1] for s in spans)
        if x2 - x1 < INNER_MIN_WIDTH * half:
            return None
        # the collar stands above the shoulder line, as for the upper body's own box
        y1 = min(float(points[run[0]][1]), float(top[1]) - NECKLINE_ABOVE_SHOULDERS * torso)
        y2 = float(points[run[1] - 1][1]) + 0.05 * torso
        colour = np.median([layer[1] for _, layer in found if layer is not None], axis=0)
        return RegionBox(Region.inner, clip_box([x1, y1, x2, y2]), lm.score(SHOULDERS), reference=colour)

    def _layer_at(self, centre: np.ndarray, half: float) -> tuple[float, np.ndarray] | None:
        """Where beside the centre line (past a tie) the chest at this height differs from both
        fronts, which are alike, and its colour; None when it does not."""
        offset = np.array([INNER_FRONTS * half, 0.0])
        left, right = self._patch_colour(centre - offset), self._patch_colour(centre + offset)
        if np.linalg.norm(left - right) >= INNER_CONTRAST:
            return None
        for shift in (0.0, -0.2 * half, 0.2 * half):
            point = centre + np.array([shift, 0.0])
            middle = self._patch_colour(point)
            unlike = min(np.linalg.norm(middle - left), np.linalg.norm(middle - right)) > INNER_CONTRAST
            if unlike and self._patch(point)[1] < 0.3:
                return shift, middle
        return None

    def _layer_span(
        self, centre: np.ndarray, half: float, layer: tuple[float, np.ndarray]
    ) -> tuple[float, float]:
        """Left and right x of the inner layer at this height: the patches of its colour on either
        side of where it was found, across gaps (a tie, buttons) of up to a quarter of the half
        shoulder width."""
        shift, colour = layer
        offsets = np.linspace(-1.0, 1.0, 41) * half
        like = [
            np.linalg.norm(self._patch_colour(centre + np.array([o, 0.0])) - colour) < 0.75 * INNER_CONTRAST
            for o in offsets
        ]
        start = int(np.argmin(np.abs(offsets - shift)))
        ends = []
        for step in (-1, 1):
            at, last, gap = start, start, 0
            while 0 <= at + step < len(offsets) and gap <= 5:
                at += step
                gap = 0 if like[at] else gap + 1
                last = at if like[at] else last
            ends.append(float(centre[0] + offsets[last]))
        pad = 0.025 * half
        return ends[0] - pad, ends[1] + pad

    def _sleeved_wrists(self, lm: Landmarks) -> list[np.ndarray]:
        """Wrists whose forearm is covered (little skin from elbow to wrist): long sleeves."""
        covered = []
        for elbow, wrist in ((LEFT_ELBOW, LEFT_WRIST), (RIGHT_ELBOW, RIGHT_WRIST)):
            if not (lm.usable(elbow) and lm.usable(wrist)):
                continue
            start, end = lm.xy[elbow], lm.xy[wrist]
            shares = [self._patch(start + (end - start) * t)[1] for t in np.linspace(0.15, 0.85, 5)]
            if float(np.mean(shares)) < 0.25:
                covered.append(end)
        return covered

    def _lower(self, lm: Landmarks, torso: float, split: float | None) -> RegionBox | None:
        if not lm.all_usable(HIPS):
            return None
        hip_y = float(min(lm.xy[i][1] for i in HIPS))
        y1 = split if split is not None else hip_y - WAISTBAND_ABOVE_HIPS * torso
        y2 = self._lower_hem(lm, torso)
        if y2 - max(hip_y, 0.0) < 0.15 * torso:
            return None  # the frame ends at the hips: too little of the garment to use
        leg_points = tuple(i for leg in LEGS for i in leg)
        x1, x2 = self._x_range(lm, leg_points, hip_y, y2, pad=0.12 * torso)
        box = self._tighten([x1, y1, x2, y2], keep_top=split is not None)
        return RegionBox(Region.lower_body, clip_box(box), lm.score(HIPS))

    def _lower_hem(self, lm: Landmarks, torso: float) -> float:
        """Lowest point the lower garment reaches: a hem found on the legs, the ankles, or the frame."""
        hems = [self._leg_hem(lm, leg) for leg in LEGS]
        found = [h for h in hems if h is not None]
        if found:
            return min(max(found), 1.0)
        if lm.all_usable((LEFT_ANKLE, RIGHT_ANKLE)):
            return min(
                float(max(lm.xy[i][1] for i in (LEFT_ANKLE, RIGHT_ANKLE))) + TROUSER_HEM_BELOW_ANKLES * torso,
                1.0,
            )
        return 1.0

    def _leg_hem(self, lm: Landmarks, leg: tuple[int, int, int]) -> float | None:
        """Where the garment on the upper thigh gives way to bare skin along the leg, if it does.

        Patches along the leg are compared with the upper thigh by their colour histograms (a print
        stays like itself), and a hem needs the leg to be mostly skin from there on.
        """
        hip, knee, ankle = (lm.xy[i] for i in leg)
        path = [hip + (knee - hip) * t for t in np.linspace(0, 1, 14, endpoint=False)]
        if lm.usable(leg[1]):
            path += [knee + (ankle - knee) * t for t in np.linspace(0, 1, 14)]
        points = [p for p in path if 0 <= p[0] < 1 and 0 <= p[1] < 1]
        if len(points) < 8:
            return None
        patches = [self._patch(p) for p in points]
        reference = np.mean([histogram for histogram, _ in patches[1:4]], axis=0)
        unlike = np.array([np.minimum(histogram, reference).sum() < 0.35 for histogram, _ in patches])
        skin = np.array([skin_share > 0.5 for _, skin_share in patches])
        bare = unlike & skin
        run = max(3, len(points) // 8)
        for start in range(4, len(points) - run + 1):
            if bare[start : start + run].all() and bare[start:].mean() >= 0.7:
                return float(points[start][1])
        return None

    def _patch(self, point: np.ndarray) -> tuple[np.ndarray, float]:
        """Coarse colour histogram (64 bins, sums to 1) and skin share of the patch around a point."""
        radius = max(3, int(0.02 * self.height))
        cx, cy = int(point[0] * self.width), int(point[1] * self.height)
        rows = slice(max(cy - radius, 0), cy + radius + 1)
        cols = slice(max(cx - radius, 0), cx + radius + 1)
        pixels = self.image[rows, cols].reshape(-1, 3) // 64
        codes = pixels[:, 0].astype(np.int64) * 16 + pixels[:, 1] * 4 + pixels[:, 2]
        histogram = np.bincount(codes, minlength=64).astype(np.float64)
        return histogram / max(histogram.sum(), 1.0), float(self.skin[rows, cols].mean())

    def _torso_split(self, lm: Landmarks, torso: float) -> float | None:
        """Height where the top garment meets a differently coloured bottom, if it does.

        Colours are read down three vertical lines through the torso; the split that best
        separates the colours above from those below is kept when the contrast is strong.
        """
        if not lm.all_usable(SHOULDERS + HIPS):
            return None
        shoulder_y = float(np.mean([lm.xy[i][1] for i in SHOULDERS]))
        hip_mid = lm.mean_xy(HIPS)
        hip_half = abs(float(lm.xy[LEFT_HIP][0] - lm.xy[RIGHT_HIP][0])) / 2
        ys = np.linspace(shoulder_y + 0.4 * torso, min(hip_mid[1] + 0.3 * torso, 0.995), 36)
        if ys[-1] - ys[0] < 0.05:
            return None
        lines = [hip_mid[0] + offset * hip_half for offset in (-0.5, 0.0, 0.5)]
        colours = np.array([[self._patch_colour(np.array([x, y])) for x in lines] for y in ys])
        profile = np.median(colours, axis=1)
        # the split must fall between the lower ribs and just below the hip joints
        candidates = [
            i for i, y in enumerate(ys) if shoulder_y + 0.55 * torso <= y <= hip_mid[1] + 0.15 * torso
        ]
        candidates = [i for i in candidates if 3 <= i <= len(ys) - 3]
        if not candidates:
            return None
        total = float(((profile - profile.mean(axis=0)) ** 2).sum())

        def within(at: int) -> float:
            above, below = profile[:at], profile[at:]
            return float(
                ((above - above.mean(axis=0)) ** 2).sum() + ((below - below.mean(axis=0)) ** 2).sum()
            )

        best_at = min(candidates, key=within)
        gap = float(np.linalg.norm(profile[:best_at].mean(axis=0) - profile[best_at:].mean(axis=0)))
        explained = 1.0 - within(best_at) / total if total > 0 else 0.0
        if gap < 50.0 or explained < 0.6:
            return None
        return float(ys[best_at])

    def _tighten(self, box: list[float], keep_top: bool = False, keep_bottom: bool = False) -> list[float]:
        """Shrink a box to the garment pixels in it: the person mask less skin."""
        if self.person is None:
            return box
        x1, y1, x2, y2 = clip_box(box)
        c1, c2 = int(x1 * self.width), int(x2 * self.width)
        r1, r2 = int(y1 * self.height), int(y2 * self.height)
        if c2 - c1 < 4 or r2 - r1 < 4:
            return box
        person = self.person[r1:r2, c1:c2]
        garment = person & ~self.skin[r1:r2, c1:c2]
        if garment.sum() < 0.3 * max(person.sum(), 1):
            garment = person  # a skin-coloured garment: the skin test would erase it
        rows = np.flatnonzero(garment.mean(axis=1) >= 0.05)
        cols = np.flatnonzero(garment.mean(axis=0) >= 0.05)
        if rows.size < 4 or cols.size < 4:
            return box
        top = y1 if keep_top else (r1 + rows[0]) / self.height
        bottom = y2 if keep_bottom else (r1 + rows[-1] + 1) / self.height
        return [(c1 + cols[0]) / self.width, top, (c1 + cols[-1] + 1) / self.width, bottom]

    def _patch_colour(self, point: np.ndarray) -> np.ndarray:
        """Median RGB of the small patch around a point (robust to prints and noise)."""
        cx = min(max(int(point[0] * self.width), 0), self.width - 1)
        cy = min(max(int(point[1] * self.height), 0), self.height - 1)
        return self._smoothed()[cy, cx].astype(np.float64)

    def _smoothed(self) -> np.ndarray:
        """The mean of the patch around every pixel (prints and noise average out), made once."""
        if self._smooth is None:
            size = 2 * max(2, int(0.012 * self.height)) + 1
            self._smooth = cv2.blur(self.image, (size, size))
        return self._smooth

    def _feet(self, lm: Landmarks, torso: float) -> RegionBox | None:
        feet = [foot for foot in FEET if lm.usable(foot[0]) and (lm.usable(foot[1]) or lm.usable(foot[2]))]
        if not feet:
            return None
        points = np.array([lm.xy[i] for foot in feet for i in foot if lm.usable(i)])
        lengths = [
            float(np.linalg.norm(self._to_pixels(lm.xy[heel] - lm.xy[toe]))) / self.height
            for _, heel, toe in feet
        ]
        foot = max(max(lengths), 0.12 * torso)
        pad_x = 0.3 * foot * self.height / self.width
        x1, x2 = points[:, 0].min() - pad_x, points[:, 0].max() + pad_x
        ankles = [lm.xy[ankle][1] for ankle, _, _ in feet]
        y1 = min(ankles) - 0.1 * foot  # most shoes start at the ankle; boots are taller
        y2 = points[:, 1].max() + 0.3 * foot
        # the person mask knows where the shoes end: the sole and the toe cap reach past the keypoints
        reach_x = foot * self.height / self.width
        extent = self._mask_bounds(
            [points[:, 0].min() - reach_x, y1, points[:, 0].max() + reach_x, y2 + 0.5 * foot]
        )
        if extent is not None:
            x1, x2, y2 = extent[0], extent[2], max(extent[3], points[:, 1].max())
        score = float(np.mean([lm.visibility[i] for f in feet for i in f]))
        return RegionBox(Region.feet, clip_box([x1, y1, x2, y2]), score)

    # --- person: framing, view, face ----------------------------------------------------------

    def _head_in_frame(self, lm: Landmarks) -> bool:
        """Eyes and mouth seen, and the crown (about two eye-to-mouth heights above the eyes) inside."""
        if not lm.all_usable((NOSE, LEFT_EYE, RIGHT_EYE, MOUTH_LEFT, MOUTH_RIGHT)):
            return False
        eye_y = float(np.mean([lm.xy[i][1] for i in (LEFT_EYE, RIGHT_EYE)]))
        mouth_y = float(np.mean([lm.xy[i][1] for i in (MOUTH_LEFT, MOUTH_RIGHT)]))
        return eye_y - 2.0 * max(mouth_y - eye_y, 0.0) >= -0.02

    @staticmethod
    def _feet_in_frame(lm: Landmarks) -> bool:
        return all(lm.usable(ankle) and (lm.usable(heel) or lm.usable(toe)) for ankle, heel, toe in FEET)

    def _view(self, lm: Landmarks, torso: float, face_seen: bool) -> View:
        """front/back from which shoulder is on which side of the image; left/right (the side of
        the image the person faces) when the shoulders are seen edge-on or the head is turned
        more than about 45 degrees (the nose far off the middle of the ears)."""
        left, right = self._to_pixels(lm.xy[LEFT_SHOULDER]), self._to_pixels(lm.xy[RIGHT_SHOULDER])
        nose = self._to_pixels(lm.xy[NOSE])
        shoulders_mid = (left[0] + right[0]) / 2
        edge_on = abs(float(left[0] - right[0])) < PROFILE_SHOULDER_SPAN * torso * self.height
        if edge_on and lm.usable(NOSE) and abs(nose[0] - shoulders_mid) > 0.05 * torso * self.height:
            return "right" if nose[0] > shoulders_mid else "left"
        if lm.all_usable((NOSE, LEFT_EAR, RIGHT_EAR)):
            ear_left, ear_right = self._to_pixels(lm.xy[LEFT_EAR]), self._to_pixels(lm.xy[RIGHT_EAR])
            ears_mid = (ear_left[0] + ear_right[0]) / 2
            yaw = (nose[0] - ears_mid) / max(abs(float(ear_left[0] - ear_right[0])), 1.0)
            if abs(yaw) > PROFILE_HEAD_YAW:
                return "right" if yaw > 0 else "left"
        facing_camera = left[0] > right[0]  # the person's left shoulder on the image's right
        return "front" if facing_camera or face_seen else "back"

    # --- person and face -----------------------------------------------------------------------

    def _face_from_landmarks(self, lm: Landmarks) -> list[float] | None:
        points = np.array([lm.xy[i] for i in FACE_POINTS if lm.usable(i)])
        if len(points) < 3:
            return None
        px = self._to_pixels(points)
        size = max(float(np.ptp(px[:, 0])), float(np.ptp(px[:, 1]))) * 1.6
        cx, cy = px[:, 0].mean(), px[:, 1].mean()
        box = [
            (cx - size / 2) / self.width,
            (cy - size * 0.6) / self.height,
            (cx + size / 2) / self.width,
            (cy + size * 0.5) / self.height,
        ]
        return clip_box(box)

    def _person_box(self, lm: Landmarks, face: list[float] | None) -> list[float]:
        usable = np.array([lm.xy[i] for i in range(len(lm.visibility)) if lm.usable(i)])
        if usable.size == 0:
            usable = lm.xy
        x1, y1 = usable.min(axis=0)
        x2, y2 = usable.max(axis=0)
        if face:
            x1, y1, x2, y2 = min(x1, face[0]), min(y1, face[1]), max(x2, face[2]), max(y2, face[3])
        if self.mask is not None:
            extent = self._mask_box(x1, y1, x2, y2)
            if extent is not None:
                x1, y1, x2, y2 = (
                    min(x1, extent[0]),
                    min(y1, extent[1]),
                    max(x2, extent[2]),
                    max(y2, extent[3]),
                )
        return clip_box([x1, y1, x2, y2])

    def _garment_colour(self, box: list[float], reference: np.ndarray | None = None) -> str | None:
        """Dominant colour of the garment pixels in the box: the person mask less skin (and, with a
        ``reference``, only where the surroundings are of about that colour)."""
        if self.person is None:
            return None
        x1, y1, x2, y2 = clip_box(box)
        rows = slice(int(y1 * self.height), int(y2 * self.height))
        cols = slice(int(x1 * self.width), int(x2 * self.width))
        garment = self.person[rows, cols] & ~self.skin[rows, cols]
        if reference is not None:
            distance = np.linalg.norm(self._smoothed()[rows, cols].astype(np.float64) - reference, axis=2)
            garment &= distance < 0.75 * INNER_CONTRAST
        pixels = self.image[rows, cols][garment]
        if len(pixels) < 50:
            return None
        step = max(1, len(pixels) // 3000)  # a few thousand pixels name a colour as well as all of them
        return dominant_colour(pixels[::step])[0]

    def _mask_bounds(self, box: list[float]) -> list[float] | None:
        """Rows and columns of the box that the person mask covers (at least 5% of the box)."""
        if self.person is None:
            return None
        x1, y1, x2, y2 = clip_box(box)
        c1, c2 = int(x1 * self.width), int(x2 * self.width)
        r1, r2 = int(y1 * self.height), int(y2 * self.height)
        if c2 - c1 < 3 or r2 - r1 < 3:
            return None
        window = self.person[r1:r2, c1:c2]
        rows = np.flatnonzero(window.mean(axis=1) >= 0.05)
        cols = np.flatnonzero(window.mean(axis=0) >= 0.05)
        if rows.size < 2 or cols.size < 2:
            return None
        return [
            (c1 + cols[0]) / self.width,
            (r1 + rows[0]) / self.height,
            (c1 + cols[-1] + 1) / self.width,
            (r1 + rows[-1] + 1) / self.height,
        ]

    def _mask_box(self, x1: float, y1: float, x2: float, y2: float) -> list[float] | None:
        """Bounding box of the mask near the keypoints (ignores other people far away)."""
        assert self.mask is not None
        pad_x, pad_y = 0.25 * (x2 - x1), 0.15 * (y2 - y1)
        c1, c2 = int(max(x1 - pad_x, 0) * self.width), int(min(x2 + pad_x, 1) * self.width)
        r1, r2 = int(max(y1 - pad_y, 0) * self.height), int(min(y2 + pad_y, 1) * self.height)
        window = self.mask[r1:r2, c1:c2] > MASK_THRESHOLD
        if window.sum() < 50:
            return None
        rows, cols = np.flatnonzero(window.any(axis=1)), np.flatnonzero(window.any(axis=0))
        return [
            (c1 + cols[0]) / self.width,
            (r1 + rows[0]) / self.height,
            (c1 + cols[-1] + 1) / self.width,
            (r1 + rows[-1] + 1) / self.height,
        ]


def _first_run(flags: list[bool], before: int, gap: int = 3) -> tuple[int, int] | None:
    """[start, end) of the first run of True that starts before index ``before``, from its first
    True to its last; up to ``gap`` False in a row (a tie knot, a button, a shadow) do not end it."""
    start = next((i for i in range(min(before, len(flags))) if flags[i]), None)
    if start is None:
        return None
    end = last = start
    while end < len(flags) and end - last <= gap + 1:
        if flags[end]:
            last = end
        end += 1
    return start, last + 1


def grey_world(image: np.ndarray) -> np.ndarray:
    """The image with each channel scaled to the same mean: a colour cast taken away."""
    means = image.reshape(-1, 3).mean(axis=0)
    gains = means.mean() / np.maximum(means, 1.0)
    return np.clip(image * gains, 0, 255).astype(np.uint8)


def skin_rule(ycrcb: np.ndarray) -> np.ndarray:
    """Pixels of any skin tone (the YCrCb skin rule)."""
    return np.asarray(cv2.inRange(ycrcb, np.array([0, 133, 77]), np.array([255, 180, 130])) > 0)


def skin_mask(ycrcb: np.ndarray, skin: np.ndarray, face_box: list[float] | None) -> np.ndarray:
    """Skin pixels of an image (in YCrCb; ``skin``: its skin_rule), narrowed to this person's face
    tone when the face is seen."""
    if face_box is None:
        return skin
    height, width = ycrcb.shape[:2]
    fx1, fy1, fx2, fy2 = face_box
    # the centre of the face box: cheeks and nose, little hair or background
    rows = slice(int((fy1 + 0.35 * (fy2 - fy1)) * height), int((fy1 + 0.75 * (fy2 - fy1)) * height) + 1)
    cols = slice(int((fx1 + 0.3 * (fx2 - fx1)) * width), int((fx1 + 0.7 * (fx2 - fx1)) * width) + 1)
    face_skin = skin[rows, cols]
    if face_skin.sum() < 20:
        return skin
    cr0, cb0 = (float(np.median(ycrcb[rows, cols, channel][face_skin])) for channel in (1, 2))
    low, high = np.array([0, max(cr0 - 14, 0), max(cb0 - 14, 0)]), np.array([255, cr0 + 14, cb0 + 14])
    tone = cv2.inRange(ycrcb, low, high) > 0
    return skin & tone
