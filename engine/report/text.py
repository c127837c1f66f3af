"""The report's words and numbers in French (the default: the nurses and clinicians who read it
are French) or English."""
from __future__ import annotations

NBSP = "\u00a0"

LABELS = {
    "fr": {
        "title": "veille — rapport de backtest",
        "generated": "Cohorte {cohort} ; règles {rules} ; {n} événements étiquetés.",
        "summary": "Résumé de la cohorte",
        "patients": "Patients", "readings": "Relevés", "patient_days": "Patients-jours",
        "span": "Période", "programme": "Programme", "events": "Événements étiquetés",
        "event_type": "Type d'événement", "count": "Nombre", "alerts": "Alertes",
        "backtest": "Backtest des règles",
        "backtest_intro": "Par pack et par règle : alertes pour 100 patients-jours, part des "
                          "patients alertés, sensibilité (événements détectés dans la fenêtre "
                          "de détection), valeur prédictive positive (VPP), délai d'avance "
                          "médian et interquartile, charge infirmière à {nurses} "
                          "infirmier(e)s.",
        "per_pack": "Par pack", "per_rule": "Par règle", "all_packs": "tous les packs",
        "col_pack": "Pack / règle", "col_events": "Événements", "col_detected": "Détectés",
        "col_sens": "Sensibilité", "col_lead": "Avance, médiane (EIQ)",
        "col_alerts": "Alertes", "col_rate": "Alertes / 100 patients-jours",
        "col_alerted": "Patients alertés", "col_ppv": "VPP",
        "col_nurse": "Alertes par infirmier(e)-jour",
        "sweep": "Balayage des paramètres",
        "sweep_none": "Aucun balayage demandé (--sweep PACK.PARAM=DÉBUT:FIN:PAS).",
        "sweep_intro": "Chaque point est une valeur de {params} ; ★ la valeur actuelle, "
                       "la ligne relie le front de Pareto (moins d'alertes, plus "
                       "d'événements détectés, plus d'avance).",
        "burden": "Alertes pour 100 patients-jours",
        "sensitivity": "Sensibilité (%)", "lead": "Délai d'avance médian (h)",
        "points": "points du balayage", "pareto": "front de Pareto", "current": "valeur actuelle",
        "sweep_fig1": "Charge d'alertes et sensibilité",
        "sweep_fig2": "Charge d'alertes et délai d'avance (barres : écart interquartile)",
        "timelines": "Chronologies de patients",
        "timelines_intro": "Constantes, sorties des détecteurs avec leurs seuils, alertes "
                           "(bandes : épisodes ouverts), risque et événements étiquetés.",
        "patient": "Patient {pid} ({programme})", "time": "Date",
        "risk": "Risque de dégradation à 48 h (%)",
        "event": "événement", "onset": "début du prodrome", "threshold": "seuil",
        "firing": "déclenchement", "no_patient": "Aucun patient à montrer.",
        "episodes_of": "Alertes : {rules}.", "no_alert": "Aucune alerte.",
        "events_of": "Événements : {events}.", "no_event": "Aucun événement étiqueté.",
        "hourly": "moyenne horaire",
    },
    "en": {
        "title": "veille — backtest report",
        "generated": "Cohort {cohort}; rules {rules}; {n} labelled events.",
        "summary": "Cohort summary",
        "patients": "Patients", "readings": "Readings", "patient_days": "Patient-days",
        "span": "Period", "programme": "Programme", "events": "Labelled events",
        "event_type": "Event type", "count": "Count", "alerts": "Alerts",
        "backtest": "Rule backtest",
        "backtest_intro": "Per pack and per rule: alerts per 100 patient-days, share of "
                          "patients alerted, sensitivity (events detected within the detection "
                          "window), positive predictive value (PPV), median and interquartile "
                          "lead time, nurse workload at {nurses} nurse(s).",
        "per_pack": "Per pack", "per_rule": "Per rule", "all_packs": "all packs",
        "col_pack": "Pack / rule", "col_events": "Events", "col_detected": "Detected",
        "col_sens": "Sensitivity", "col_lead": "Lead, median (IQR)",
        "col_alerts": "Alerts", "col_rate": "Alerts / 100 patient-days",
        "col_alerted": "Patients alerted", "col_ppv": "PPV",
        "col_nurse": "Alerts per nurse-day",
        "sweep": "Parameter sweep",
        "sweep_none": "No sweep requested (--sweep PACK.PARAM=START:STOP:STEP).",
        "sweep_intro": "Each point is a value of {params}; ★ the current value, the line joins "
                       "the Pareto front (fewer alerts, more events detected, longer lead).",
        "burden": "Alerts per 100 patient-days",
        "sensitivity": "Sensitivity (%)", "lead": "Median lead time (h)",
        "points": "sweep points", "pareto": "Pareto front", "current": "current value",
        "sweep_fig1": "Alert burden and sensitivity",
        "sweep_fig2": "Alert burden and lead time (bars: interquartile range)",
        "timelines": "Patient timelines",
        "timelines_intro": "Vitals, detector outputs with their thresholds, alerts (bands: "
                           "open episodes), risk and labelled events.",
        "patient": "Patient {pid} ({programme})", "time": "Date",
        "risk": "Risk of deterioration within 48 h (%)",
        "event": "event", "onset": "prodrome onset", "threshold": "threshold",
        "firing": "firing", "no_patient": "No patient to show.",
        "episodes_of": "Alerts: {rules}.", "no_alert": "No alert.",
        "events_of": "Events: {events}.", "no_event": "No labelled event.",
        "hourly": "hourly mean",
    },
}


def words(lang: str) -> dict:
    """The labels of ``lang`` ('fr' or 'en')."""
    return LABELS[lang]


def number(value, digits: int, lang: str) -> str:
    """``1.25`` → ``1,25`` in French; ``–`` for unknown."""
    if value is None:
        return "–"
    text = f"{value:,.{digits}f}"
    if lang == "fr":
        text = text.replace(",", NBSP).replace(".", ",")
    return text


def percent(value, lang: str) -> str:
    """A share as a whole percentage: ``87 %`` (non-breaking space in French)."""
    if value is None:
        return "–"
    return f"{100 * value:.0f}{NBSP if lang == 'fr' else ''}%"
