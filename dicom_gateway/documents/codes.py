"""Coded concepts for the SR: CheXpert labels, report headings, our private scheme.

Standard codes where a verified one exists (SNOMED CT, DCM); a declared private
scheme (designator starting with "99", as PS3.3 requires) for the rest.  Sources are
listed in ``shared/reference/dicom-sr-and-windowing.md`` section 3.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept

PRIVATE_SCHEME = "99NVRCXR"
PRIVATE_SCHEME_NAME = "CXR Reason Gateway private concepts"


def _sct(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, "SCT", meaning)


def _dcm(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, "DCM", meaning)


def _private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, PRIVATE_SCHEME, meaning)


LABEL_CODES: dict[str, CodedConcept] = {
    "Atelectasis": _sct("46621007", "Atelectasis"),
    "Cardiomegaly": _sct("8186001", "Cardiomegaly"),
    "Consolidation": _sct("95436008", "Lung consolidation"),
    "Edema": _sct("19242006", "Pulmonary edema"),
    "Enlarged Cardiomediastinum": _private("ENL_CARDIOMED", "Enlarged cardiomediastinum"),
    "Fracture": _sct("125605004", "Fracture of bone"),
    "Lung Lesion": _private("LUNG_LESION", "Lung lesion"),
    "Lung Opacity": _dcm("112033", "Abnormal opacity"),
    "No Finding": _sct("281900007", "No abnormality detected"),
    "Pleural Effusion": _sct("60046008", "Pleural effusion"),
    "Pleural Other": _private("PLEURAL_OTHER", "Other pleural abnormality"),
    "Pneumonia": _sct("233604007", "Pneumonia"),
    "Pneumothorax": _sct("36118008", "Pneumothorax"),
    "Support Devices": _sct("49062001", "Device"),
}

# TID 1500's "Procedure reported" takes its value from CID 100, which holds no chest
# radiograph code: the CID's general imaging procedure goes there, and the procedure
# itself is named in the header's Performed Procedure Code Sequence (docs/conformance.md).
PROCEDURE_REPORTED = _sct("363679005", "Imaging procedure")
PROCEDURE_CXR = _sct("399208008", "Plain X-ray of chest")
QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = _dcm("121106", "Comment")
FINDING = _dcm("121071", "Finding")
IMPRESSION = _dcm("121073", "Impression")
INDICATION = CodedConcept("18785-6", "LN", "Indications for Procedure")
COMPARISON = CodedConcept("55114-3", "LN", "Prior Procedure Descriptions")
TECHNIQUE = CodedConcept("55111-9", "LN", "Current Procedure Descriptions")
REASONING = _private("REASONING", "Model reasoning trace")
RESULT_STATUS = _private("RESULT_STATUS", "AI result status")
ANSWER = _private("ANSWER", "Model answer, verbatim")
REPORT_TEXT = _private("REPORT_TEXT", "Model structured report, verbatim")
REPORT_REASONING = _private("REPORT_REASONING", "Model reasoning trace, report turn")
REPORT_SECTION = _private("REPORT_SECTION", "Other report section")
REPORT_PREAMBLE = _private("REPORT_PREAMBLE", "Report text before the first heading")
SOURCE = _sct("260753009", "Source")
