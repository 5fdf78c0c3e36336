"""The fixed vocabulary of the demo company: entities, client and people names, projects, tasks,
notes and rate cards. Only constants live here; `generator.py` draws from them with a seeded RNG."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# The change date of the effective-dated USD default card (the demo's "price rise").
RATE_CHANGE_DATE = date(2026, 10, 1)


@dataclass(frozen=True)
class EntitySpec:
    id: str
    name: str
    functional_currency: str
    harvest_account_id: str
    date_format: str  # the Harvest account's date setting, as in config.schema.HarvestCsvSettings
    decimal_separator: str
    tax_rate: str
    tax_jurisdiction: str
    email_domain: str
    share_of_people: float
    share_of_clients: float
    # Billing currencies of the entity's clients in order; the rest bill in the functional currency.
    special_currencies: tuple[str, ...]
    legal_suffixes: tuple[str, ...]


ENTITIES: tuple[EntitySpec, ...] = (
    EntitySpec(
        "us", "Northwind Consulting Inc.", "USD", "1048576", "YYYY-MM-DD", ".", "0", "US",
        "northwind-us.example", 0.45, 0.45, ("USD", "JPY"), ("Inc.", "LLC", "Corp."),
    ),
    EntitySpec(
        "uk", "Northwind Consulting Ltd", "GBP", "2097152", "YYYY-MM-DD", ".", "0.20", "GB",
        "northwind-uk.example", 0.30, 0.30, ("GBP", "EUR", "USD"), ("Ltd", "plc", "Limited"),
    ),
    EntitySpec(
        "de", "Northwind Consulting GmbH", "EUR", "4194304", "DD.MM.YYYY", ",", "0.19", "DE",
        "northwind-de.example", 0.25, 0.25, ("EUR", "CHF", "USD"), ("GmbH", "AG", "KG"),
    ),
)  # fmt: skip

CURRENCY_NAMES = {
    "USD": "US Dollar",
    "GBP": "British Pound",
    "EUR": "Euro",
    "JPY": "Japanese Yen",
    "CHF": "Swiss Franc",
}

# Clients whose names are pinned because a test or a story refers to them.
PINNED_CLIENTS = {"JPY": "Nakatomi Trading", "CHF": "Alpenblick Versicherungen"}
FIRST_CLIENT = "Globex Corporation"  # the near-duplicate showcase: "globex  corporation", "... Inc."

CLIENT_BASE_NAMES = (
    "Initech", "Umbrella Health", "Acme Robotics", "Hooli", "Vandelay Industries", "Stark Logistics",
    "Wayne Analytics", "Wonka Foods", "Soylent Labs", "Tyrell Systems", "Cyberdyne Software",
    "Oscorp Media", "Massive Dynamic", "Aperture Science", "Black Mesa Research", "Dunder Mifflin Paper",
    "Pied Piper", "Gringotts Banking", "Sterling Cooper", "Bluth Company", "Prestige Worldwide",
    "Monarch Solutions", "Kruger Industrial", "Rekall", "Virtucon", "Gekko Partners", "Duff Brewing",
    "Krusty Brands", "Blue Sun", "Weyland Yutani", "Ollivander Crafts", "Los Pollos Hermanos",
    "Wernham Hogg", "Bushwood Country Club", "Cogswell Cogs", "Spacely Sprockets", "Stratton Oakmont",
    "Paper Street Soap", "Oceanic Airlines", "InGen Biotech", "Gannon Energy", "Brawndo Drinks",
    "Omni Consumer Products", "Yoyodyne Propulsion", "Sirius Cybernetics", "Lacuna Labs",
    "Rich Industries", "Callister Studio", "Mooby Restaurants", "Veridian Dynamics", "Central Perk",
    "Fabrikam", "Contoso Pharma", "Tailspin Toys", "Wingtip Outfitters", "Litware", "Proseware",
    "Adventure Works", "Lamna Healthcare", "Margie Travel", "Trey Research", "Coho Winery",
    "Alpine Ski House", "Relecloud", "Woodgrove Bank", "Humongous Insurance", "Graphic Design Institute",
)  # fmt: skip

# Appended when more clients are asked for than there are base names.
CLIENT_NAME_REGIONS = ("North", "South", "East", "West", "Central", "Pacific", "Atlantic", "Nordic")

PROJECT_NAMES = (
    "Website Redesign", "Mobile App", "Data Platform Migration", "Support Retainer", "Security Audit",
    "ERP Integration", "Analytics Dashboard", "Cloud Migration", "Brand Refresh", "API Development",
    "Customer Portal", "Checkout Optimisation", "Design System", "Compliance Review", "Search Upgrade",
)  # fmt: skip

# (name, billable_by_default, item, revenue_account, default_hourly_rate in USD)
TASKS: tuple[tuple[str, bool, str, str | None, str], ...] = (
    ("Development", True, "Development", "4000", "150.00"),
    ("Design", True, "Design", "4000", "140.00"),
    ("Project Management", True, "Project Management", "4000", "175.00"),
    ("QA & Testing", True, "QA & Testing", "4000", "110.00"),
    ("Consulting", True, "Consulting", "4010", "190.00"),
    ("Meetings", False, "Non-billable time", None, "0.00"),
    ("Training", False, "Non-billable time", None, "0.00"),
    ("Admin", False, "Non-billable time", None, "0.00"),
    ("Pre-sales", False, "Non-billable time", None, "0.00"),
)
# Task mix on client projects (must name tasks above; weights sum to 1).
CLIENT_TASK_WEIGHTS = (
    ("Development", 0.45),
    ("Design", 0.15),
    ("Project Management", 0.12),
    ("QA & Testing", 0.12),
    ("Consulting", 0.08),
    ("Meetings", 0.08),
)
# Internal projects per entity: (name, task, has a project code)
INTERNAL_PROJECTS = (
    ("Internal - Training", "Training", True),
    ("Internal - Admin", "Admin", False),
    ("Internal - Sales & Pre-sales", "Pre-sales", True),
    ("Internal - Team Meetings", "Meetings", False),
)

ROLES = ("Engineering", "Design", "Delivery", "QA", "Consulting")

FIRST_NAMES = {
    "us": ("James", "Mary", "Robert", "Patricia", "Michael", "Jennifer", "David", "Linda", "Carlos", "Aisha",
           "Kevin", "Emily", "Brian", "Grace", "Jamal", "Olivia", "Ethan", "Sofia", "Noah", "Maya"),
    "uk": ("Oliver", "Amelia", "Harry", "Isla", "George", "Ava", "Jack", "Mia", "Charlie", "Freya",
           "Thomas", "Poppy", "Arjun", "Siobhan", "Rhys", "Niamh", "Callum", "Priya", "Alfie", "Imogen"),
    "de": ("Jürgen", "Anna", "Lukas", "Lena", "Maximilian", "Sophie", "Björn", "Marie", "Felix", "Jörg",
           "Hannah", "Jonas", "Lea", "Tobias", "Käthe", "Niklas", "Sören", "Laura", "Stefan", "Zoë"),
}  # fmt: skip
LAST_NAMES = {
    "us": ("Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
           "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Lee"),
    "uk": ("Jones", "Evans", "Roberts", "Walker", "Wright", "Thompson", "White", "Hughes", "Edwards",
           "Green", "Hall", "Wood", "Harris", "Clarke", "Patel", "O'Brien", "Murphy", "Khan"),
    "de": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
           "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann"),
}  # fmt: skip

# Notes per task; commas, quotes and non-ASCII characters are deliberate (they exercise CSV quoting
# and encodings). German notes are used for the de entity.
NOTES_EN = {
    "Development": ("Implemented feature flag for checkout", "Fixed pagination bug, added tests",
                    'Refactored "billing" module', "Code review and merge", "Spike: caching layer"),
    "Design": ("Wireframes for onboarding flow", "Design review with client", "Iconography, v2"),
    "Project Management": ("Sprint planning", "Status report to stakeholders", "Backlog grooming"),
    "QA & Testing": ("Regression tests for release 2.3", "Exploratory testing – mobile", "Test plan"),
    "Consulting": ("Architecture workshop", "Advisory call re: data residency", "Roadmap session"),
    "Meetings": ("Weekly sync", "Retro", "Stand-up, 1:1s"),
    "Training": ("Security awareness course", "Conference talk prep", "Kubernetes certification"),
    "Admin": ("Expenses and timesheets", "Hiring interviews", "Laptop set-up"),
    "Pre-sales": ("Proposal for RFP", "Discovery call", "Estimate, scope & pricing"),
}  # fmt: skip
NOTES_DE = {
    "Development": ("Feature-Flag für Checkout umgesetzt", "Fehler in Paginierung behoben", "Code-Review",
                    'Modul "Abrechnung" überarbeitet'),
    "Design": ("Wireframes für Onboarding", "Design-Abstimmung mit Kunde", "Icons überarbeitet"),
    "Project Management": ("Sprintplanung", "Statusbericht, Steuerkreis", "Backlog-Pflege"),
    "QA & Testing": ("Regressionstests für Release 2.3", "Explorative Tests – Mobil", "Testplan"),
    "Consulting": ("Architektur-Workshop", "Beratung zur Datenhaltung", "Roadmap-Termin"),
    "Meetings": ("Wöchentliche Abstimmung", "Retrospektive", "Daily, Einzelgespräche"),
    "Training": ("Schulung Informationssicherheit", "Konferenzvortrag vorbereitet", "Zertifizierung"),
    "Admin": ("Spesen und Zeiterfassung", "Bewerbungsgespräche", "Laptop eingerichtet"),
    "Pre-sales": ("Angebot für Ausschreibung", "Erstgespräch", "Schätzung, Umfang & Preise"),
}  # fmt: skip

# Rate cards as minor-free Decimal strings. The default card per currency; USD rises on
# RATE_CHANGE_DATE. Cost rates are in the entity's functional currency.
DEFAULT_BILL = {"USD": ("150.00", "165.00"), "GBP": ("120.00", "120.00"), "EUR": ("135.00", "135.00"),
                "CHF": ("145.00", "145.00"), "JPY": ("21000", "21000")}  # fmt: skip
DEFAULT_COST = {"USD": "70.00", "GBP": "55.00", "EUR": "60.00"}
# Task overrides (bill rate) per currency.
TASK_BILL_OVERRIDES = {
    "Project Management": {"USD": "175.00", "GBP": "140.00", "EUR": "155.00"},
    "QA & Testing": {"USD": "110.00", "GBP": "95.00", "EUR": "100.00"},
}
# Senior people (two per entity) bill and cost more; contractors cost more.
SENIOR_BILL = {"USD": "225.00", "GBP": "195.00", "EUR": "210.00"}
SENIOR_COST = {"USD": "110.00", "GBP": "90.00", "EUR": "95.00"}
CONTRACTOR_COST = {"USD": "95.00", "GBP": "80.00", "EUR": "85.00"}
SENIORS_PER_ENTITY = 2

# Strings used by the malformed-row injector.
UNKNOWN_CLIENT = "Unmapped Prospect LLC"
UNKNOWN_CURRENCY = "Bitcoin - XBT"  # XBT is not an ISO 4217 code
ABSURD_HOURS = 30
