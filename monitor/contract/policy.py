"""The clauses of the portals' own rules that the detectors enforce, quoted word for word.

Sources: `schools-portal-site-terms.txt` (Lancashire County Council Schools' Portal Site
Terms) and `parent-portal-acceptable-use-policy.txt` (Preston School Parent Portal
Acceptable Use Policy).
"""

SCHOOLS_TERMS = "Schools' Portal Site Terms"
PARENT_AUP = "Parent Portal Acceptable Use Policy"

SCHOOLS_SIMULTANEOUS_LOGINS = (
    f'{SCHOOLS_TERMS}: "This log will be monitored closely to check for multiple, simultaneous logins."'
)
SCHOOLS_PERSONAL_LOGIN = (
    f'{SCHOOLS_TERMS}: "An end user must only use login details which have been issued to them for their personal use."'
)
PARENT_OWN_LOGIN = (
    f'{PARENT_AUP}: "You must never use anyone else\'s username or password"'
)
SCHOOLS_DORMANCY = (
    f"{SCHOOLS_TERMS}: \"If you do not use your Schools' Portal account for a period of 180 days "
    'we automatically disable your Portal account."'
)
PARENT_AUTHORISED_USERS = (
    f'{PARENT_AUP}: "Preston School Parent Portal is provided for use only by persons who are '
    'legally responsible for a child currently attending the school"'
)
PARENT_INSECURE_PLACES = (
    f'{PARENT_AUP}: "You should not attempt to access the Parent and carers Portal system in any '
    "environment where the security of the information contained in the Parent Portal may be "
    'placed at risk e.g. a cybercafé"'
)
PARENT_REVOCATION = (
    f'{PARENT_AUP}: "Preston School reserves the right to revoke or deny access to the Parent '
    'Portal of any individual"'
)
SCHOOLS_WITHDRAWAL = (
    f'{SCHOOLS_TERMS}: "Lancashire County Council reserves the right to withdraw access to the '
    'system, from any end user who is shown to be in breach of these terms and conditions."'
)


def for_portal(portal: str | None, schools: str, parent: str) -> str:
    """The clause of the portal the event came from; both when the portal is not known."""
    if portal == "schools":
        return schools
    if portal == "parent":
        return parent
    return f"{schools} {parent}"
SCHOOLS_SECURITY = (
    f"{SCHOOLS_TERMS}: \"As an end user it is your responsibility to ensure the security of the "
    'system and confidentiality of data."'
)

SCHOOLS_LOG_OUT = (
    f'{SCHOOLS_TERMS}: "To prevent unauthorised access to the system, do not leave your PC logged on '
    'and unattended." and "Always log out of the Schools Portal when you have completed your tasks."'
)
PARENT_PUPIL_RECORDS = (
    f'{PARENT_AUP}: "Preston School Parent Portal is provided for use only by persons who are '
    "legally responsible for a child currently attending the school – those who our records show "
    "have 'parental responsibility'.\" The risk it names first: \"The wrongful disclosure of "
    'private, sensitive, and confidential information"'
)
PARENT_COURT_RULING = (
    f'{PARENT_AUP}: access is revoked when a "Court ruling preventing access to child or family '
    'members is issued" and "If any child protection concerns are raised or disputes occur the '
    'school will revoke access for all parties concerned pending investigation."'
)
SCHOOLS_ITEMS_VIEWED = (
    f'{SCHOOLS_TERMS}: "It also records each item that is viewed by the end user during a logged '
    'session." "Data must only be shared with authorised persons."'
)
SCHOOLS_COPIES = (
    f'{SCHOOLS_TERMS}: "Confidentiality of data can be compromised by end users who save data from '
    'the system onto portable media" and "by printing out \'hard copy\'."'
)
SCHOOLS_SECURE_SITE = (
    f"{SCHOOLS_TERMS}: \"The Schools' Portal is a secure site. Only registered users with valid "
    'passwords can access the entire system."'
)
SCHOOLS_UNAUTHORISED_ACCESS = (
    f'{SCHOOLS_TERMS}: "To prevent unauthorised access to the system"'
)
PARENT_LOGIN_DISCLOSURE = (
    f'{PARENT_AUP}: "The intentional or unintentional disclosure of login details to Parent Portal '
    'by authorised users."'
)
