"""Generator configurations: the knobs that change the distribution of a synthetic cohort.

A :class:`Variant` gathers the settings that :func:`engine.synth.generate_cohort` applies on top
of its models: how noisy the devices are, how many patients have an episode, how often devices
send, how often readings are missed, how large and how slow deteriorations are, how many
unlabelled transmission gaps and plausible-but-wrong readings there are. ``Variant()`` is the
generator as it has always been: with it, every frame is the same, bit for bit, as without it.

A knob only rescales a parameter of the models; it never draws random numbers of its own. So at
its default nothing changes, and a knob that changes values only (``noise_scale``,
``effect_scale``) keeps the same patients, the same episodes and the same schedule, with other
values (where a value decides whether a reading is sent at all, the CPAP's AHI and leak of a
night used 30 minutes or more, a few readings come or go).

:data:`VARIANTS` names the configurations in use: ``"default"`` (the bundled sample and every
test) and ``"shifted"``, the held-out configuration the ML risk score is evaluated on, so that a
model cannot score well by learning the generator's own settings.

>>> from engine.synth import VARIANTS, Variant
>>> VARIANTS["default"] == Variant()
True
>>> VARIANTS["shifted"].noise_scale, VARIANTS["shifted"].episode_rate
(1.5, 0.15)
>>> from engine.errors import InputError
>>> try:
...     Variant(noise_scale=0.1)
... except InputError as exc:
...     print(exc)
The 'noise_scale' setting of Variant must be a finite number from 0.25 to 4. Got 0.1 instead.
"""
from __future__ import annotations

import math
import numbers
import types
from dataclasses import asdict, dataclass, fields, replace

from ..errors import InputError
from .cohort import EPISODE_RATE

#: setting -> (lowest, highest) accepted value, both included
BOUNDS: dict[str, tuple[float, float]] = {
    "noise_scale": (0.25, 4.0),
    "episode_rate": (0.0, 1.0),
    "sampling_scale": (0.25, 4.0),
    "missed_rate_scale": (0.0, 4.0),
    "effect_scale": (0.25, 4.0),
    "prodrome_scale": (0.25, 4.0),
    "gap_rate_scale": (0.0, 4.0),
    "artefact_rate_scale": (0.0, 4.0),
}


def _number(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Variant:
    """One configuration of the synthetic cohort generator; the defaults are today's generator.

    Every setting is a plain number, checked when the variant is made (an :class:`InputError`
    naming the setting otherwise). Where each one acts, exactly:

    Attributes
    ----------
    noise_scale : float
        Multiplies every random variation of a signal around the patient's own level
        (0.25-4, default 1): the device's reading error (``sd_read`` of
        :meth:`Context.measure <engine.synth.context.Context.measure>`, the daily step count's
        noise, the CGM's 4 % relative sensor error, the lab's albumin error, the chair-rise
        retest error) *and* the slow day-to-day AR(1) wander (``sd_day``,
        :meth:`Context.day_wander <engine.synth.context.Context.day_wander>`, and the CGM's
        glucose wander). At 2 the residual of a stable patient's weight or pulse around their
        level is twice as large, reading for reading. Not scaled: the patient's level, meals,
        the daily rhythm, time jitter, artefacts (see ``artefact_rate_scale``) and the 3 % of
        ICOPE retests whose flag flips.
    episode_rate : float
        Share of each programme's patients given one labelled episode (0-1, default 0.3), as
        the ``episode_rate`` argument of :func:`~engine.synth.generate_cohort`, which overrides
        it when given.
    sampling_scale : float
        Stretches the spacing between scheduled readings (0.25-4, default 1): each scheduled
        reading (a morning weighing, an evening questionnaire, a spot-check slot, a CPAP night, a
        day's step total) is sent with its probability divided by ``sampling_scale``, so at 2 a
        patient sends half as many readings a day, at the same habitual hours. Below 1 that
        probability rises, up to every scheduled reading: a device never sends more than its
        schedule (one weighing a day, four spot-check slots). The CGM keeps its 5-minute
        interval (the rule packs' ``cgm_interval`` and their minutes-below-a-level counts assume
        the device's own interval); its signal losses last ``sampling_scale`` times longer
        (15 min-3 h at 1). Pulse and blood pressure taken after a heart failure weighing follow
        the weighings, and scheduled clinic checks (albumin, ICOPE) are not touched.
    missed_rate_scale : float
        Multiplies the odds that a scheduled reading is missed (0-4, default 1): a device that
        sends with probability ``k`` sends with ``k / (k + m (1 - k))``, about ``m`` times the
        missed share when that is small (a 10 % missed share becomes 18 % at 2, 5 % becomes
        9.5 %), and a habit of weighing once a week (``k`` 0.15) about halves in frequency
        instead of vanishing. It acts on the same scheduled readings as ``sampling_scale``, on
        the pulse and blood pressure after a heart failure weighing, and on the share of days
        with a CGM signal loss (25 % at 1). 0 means nothing scheduled is ever missed.
    effect_scale : float
        Multiplies the size of every graded episode change (0.25-4, default 1): the
        magnitudes of the ``add`` and ``scale`` effects of
        :data:`~engine.synth.EVENT_MODELS` (weight +2-4 kg in a heart failure decompensation
        becomes +1.6-3.2 kg at 0.8; a relative fall stops at -95 %), drawn in
        :func:`~engine.synth.episodes.draw_episode`. ``toward`` targets (SpO2 pulled to 85-90 %
        in a COVID-19 deterioration, glucose to 35-44 mg/dL in a severe hypoglycaemia, CPAP
        use to 0.5-3 h) and ``set`` flags are left alone: they define the event (a severe
        hypoglycaemia is glucose below 54 mg/dL), so a label never loses its meaning. The
        severity label is the same draw as at 1 (a "severe" episode is subtler, not rarer).
    prodrome_scale : float
        Stretches the time from onset to event of every event type with a prodrome (0.25-4,
        default 1): the drawn lead (3-7 days for a heart failure decompensation) is multiplied
        and rounded to the second, so the same change spreads over a longer time. A fall keeps
        no prodrome, and a device silence keeps its length (its "lead" is the silence itself).
        An episode whose stretched lead no longer fits the patient's follow-up is not placed
        (the patient stays stable), as for any episode today.
    gap_rate_scale : float
        Multiplies the expected number of unlabelled transmission gaps of 1-2.5 days
        (0-4, default 1; 0.06 per patient-week at 1, about one patient in three over six
        weeks). Their length is unchanged; none is ever placed over a labelled episode.
    artefact_rate_scale : float
        Multiplies the rate of every plausible-but-wrong reading (0-4, default 1): shoes on the
        scale, a cold finger on the oximeter, a moving hand, a badly aimed thermometer, a
        talking patient, a mask leak spike, a pedometer left on the table and the CGM's
        compression lows (rates capped at 1). Their sizes are unchanged.

    Examples
    --------
    >>> v = Variant(noise_scale=2.0)
    >>> v.kept(0.9), Variant(sampling_scale=2.0).kept(0.9)
    (0.9, 0.45)
    >>> round(Variant(missed_rate_scale=2.0).kept(0.9), 4)
    0.8182
    >>> v.replace(effect_scale=0.7).effect_scale
    0.7
    """

    noise_scale: float = 1.0
    episode_rate: float = EPISODE_RATE
    sampling_scale: float = 1.0
    missed_rate_scale: float = 1.0
    effect_scale: float = 1.0
    prodrome_scale: float = 1.0
    gap_rate_scale: float = 1.0
    artefact_rate_scale: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi = BOUNDS[f.name]
            ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
                  and math.isfinite(value) and lo <= value <= hi)
            if not ok:
                raise InputError(f"The '{f.name}' setting of Variant must be a finite number "
                                 f"from {_number(lo)} to {_number(hi)}. Got {value!r} instead.")
            object.__setattr__(self, f.name, float(value))

    # -- what the generator asks ---------------------------------------------------------------

    def kept(self, keep: float, *, scheduled: bool = True) -> float:
        """The probability that a reading the default generator sends with probability ``keep``
        is sent.

        ``missed_rate_scale`` multiplies the odds of missing it; for a ``scheduled`` reading
        (one of a device's habitual times) ``sampling_scale`` then divides the result, capped at
        1. Returns ``keep`` itself, unchanged, at the defaults.
        """
        m, s = self.missed_rate_scale, self.sampling_scale
        if m != 1.0 and keep > 0.0:
            keep = keep / (keep + m * (1.0 - keep))
        if scheduled and s != 1.0:
            keep = min(1.0, keep / s)
        return keep

    def missed(self, p: float) -> float:
        """The probability of a miss (a CGM signal-loss day) that the default generator gives
        probability ``p``: its odds multiplied by ``missed_rate_scale``; ``p`` itself at the
        default."""
        m = self.missed_rate_scale
        if m == 1.0 or p <= 0.0:
            return p
        return m * p / (m * p + 1.0 - p)

    def artefact_rate(self, rate: float) -> float:
        """The rate of a plausible-but-wrong reading: ``rate`` times ``artefact_rate_scale``,
        capped at 1."""
        a = self.artefact_rate_scale
        return rate if a == 1.0 else min(1.0, rate * a)

    # -- records ---------------------------------------------------------------------------------

    def replace(self, **changes) -> "Variant":
        """A copy with some settings changed (checked like any new variant)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, float]:
        """``{setting: value}``, in the order of the fields (``Variant(**d)`` gives it back)."""
        return asdict(self)

    @property
    def name(self) -> str | None:
        """The name of the :data:`VARIANTS` preset equal to this variant, else ``None``."""
        return next((k for k, v in VARIANTS.items() if v == self), None)


#: the named configurations. ``"shifted"`` is the held-out configuration of the ML deterioration
#: risk score: every setting moves away from the default, each in the direction that makes the
#: task harder, so a model that learnt the default generator's settings rather than physiology
#: loses there:
#:
#: - ``noise_scale`` 1.5: cheaper or less carefully used devices and a more variable population;
#:   the residual around a patient's level is 1.5 times larger, so the same change is less
#:   distinct from noise;
#: - ``episode_rate`` 0.15: half the prevalence of the training cohorts (a model's scores and
#:   its precision at a threshold must not lean on a 30 % base rate);
#: - ``sampling_scale`` 1.5: two readings where there were three (a schedule of fewer spot
#:   checks, a device synced less often) and CGM signal losses 1.5 times longer;
#: - ``missed_rate_scale`` 2.0: a less adherent population (twice the odds of a missed reading);
#: - ``effect_scale`` 0.8: subtler deteriorations (a heart failure decompensation gains 1.6-3.2 kg
#:   instead of 2-4), a lower signal-to-noise ratio together with the noise;
#: - ``prodrome_scale`` 1.3: slower onsets, so the change per day is smaller and the lead times
#:   are not the training ones;
#: - ``gap_rate_scale`` 2.0: twice as many unlabelled transmission gaps (a patchier network);
#: - ``artefact_rate_scale`` 1.5: half as many plausible-but-wrong readings again (false alarms
#:   a model must not take for deterioration).
VARIANTS: types.MappingProxyType[str, Variant] = types.MappingProxyType({
    "default": Variant(),
    "shifted": Variant(noise_scale=1.5, episode_rate=0.15, sampling_scale=1.5,
                       missed_rate_scale=2.0, effect_scale=0.8, prodrome_scale=1.3,
                       gap_rate_scale=2.0, artefact_rate_scale=1.5),
})


def named_variant(name: str, *, what: str = "The 'variant' parameter of generate_cohort"
                  ) -> Variant:
    """The :data:`VARIANTS` preset called ``name``; an :class:`InputError` naming ``what``
    (the parameter or option that gave it) for an unknown one."""
    if isinstance(name, str) and name in VARIANTS:
        return VARIANTS[name]
    raise InputError(f"{what} must be one of {', '.join(VARIANTS)}. Got {name!r} instead.")


def resolve_variant(variant: Variant | str | None, episode_rate: float | None = None
                    ) -> Variant:
    """The variant :func:`~engine.synth.generate_cohort` runs with: ``variant`` (a
    :class:`Variant`, a :data:`VARIANTS` name, or ``None`` for the default) with
    ``episode_rate`` in place of its own when that is given.

    >>> resolve_variant("shifted", episode_rate=0.3).episode_rate
    0.3
    >>> resolve_variant(None) == Variant()
    True
    """
    if variant is None:
        variant = VARIANTS["default"]
    elif isinstance(variant, str):
        variant = named_variant(variant)
    elif not isinstance(variant, Variant):
        raise InputError("The 'variant' parameter of generate_cohort must be a Variant or the "
                         f"name of one ({', '.join(VARIANTS)}). Got {variant!r} instead.")
    if episode_rate is not None:
        if not isinstance(episode_rate, (int, float)) or not 0.0 <= episode_rate <= 1.0:
            raise InputError("The 'episode_rate' parameter of generate_cohort must be a number "
                             f"in [0, 1]. Got {episode_rate!r} instead.")
        variant = replace(variant, episode_rate=float(episode_rate))
    return variant
