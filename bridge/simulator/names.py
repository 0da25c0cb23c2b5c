"""Word lists for the generated data, so the simulator looks like a South African school.

Hand-written and small on purpose: no Faker dependency, and the output is reproducible from a seed
because nothing here changes between versions of a third-party package.
"""

from __future__ import annotations

# fmt: off
MALE_NAMES: tuple[str, ...] = (
    # English
    "John", "James", "Michael", "David", "Daniel", "Matthew", "Ryan", "Liam", "Ethan", "Nathan",
    # Afrikaans
    "Johannes", "Pieter", "Hendrik", "Jacobus", "Willem", "Gerhard", "Francois", "Stefan", "Ruan", "Wian",
    # Zulu
    "Sipho", "Thabo", "Bongani", "Sibusiso", "Mandla", "Themba", "Lwazi", "Sanele", "Nkosinathi", "Musa",
    # Xhosa
    "Lwandile", "Siyabonga", "Luthando", "Anele", "Xolani", "Mzwandile", "Lunga", "Ayanda", "Vuyo", "Lindani",
    # Sotho
    "Tumelo", "Teboho", "Lerato", "Karabo", "Tshepo", "Katlego", "Mpho", "Neo", "Thabang", "Kabelo",
)

FEMALE_NAMES: tuple[str, ...] = (
    # English
    "Sarah", "Emma", "Jessica", "Michelle", "Nicole", "Megan", "Olivia", "Chloe", "Hannah", "Grace",
    # Afrikaans
    "Anri", "Elna", "Marike", "Annelie", "Liezl", "Chanel", "Carien", "Mariska", "Elmarie", "Ilse",
    # Zulu
    "Nomvula", "Zanele", "Thandeka", "Nokuthula", "Sibongile", "Nompumelelo", "Zodwa", "Lindiwe", "Ayanda",
    "Nandi",
    # Xhosa
    "Nomsa", "Thembeka", "Siphokazi", "Asanda", "Zintle", "Nosipho", "Unathi", "Yonela", "Amahle", "Lulama",
    # Sotho
    "Palesa", "Dineo", "Refilwe", "Lineo", "Mpho", "Nthabiseng", "Keneilwe", "Boitumelo", "Lebohang",
    "Puleng",
)

SURNAMES: tuple[str, ...] = (
    # English
    "Smith", "Webster", "Johnson", "Brown", "Taylor", "Williams", "Wilson", "Anderson", "Clarke", "Robinson",
    # Afrikaans
    "van der Merwe", "Botha", "Pretorius", "du Plessis", "van Wyk", "Nel", "Venter", "Fourie", "Joubert",
    "Steyn",
    # Zulu
    "Dlamini", "Nkosi", "Ndlovu", "Khumalo", "Zulu", "Mthembu", "Ngcobo", "Buthelezi", "Mkhize", "Shabalala",
    # Xhosa
    "Mahlangu", "Ngubane", "Mbeki", "Qwabe", "Sisulu", "Mxenge", "Tshabalala", "Gqirana", "Jali", "Ntshona",
    # Sotho
    "Mokoena", "Molefe", "Mofokeng", "Mahlaba", "Letsie", "Moshoeshoe", "Radebe", "Sekhukhune", "Mokhele",
    "Ramaphosa",
)

LANGUAGES: tuple[str, ...] = (
    "English", "English", "Afrikaans", "Afrikaans", "isiZulu", "isiXhosa", "Sesotho", "Setswana", "Sepedi",
)

STREETS: tuple[str, ...] = (
    "Jan Smuts Avenue", "Church Street", "Voortrekker Road", "Main Road", "Oxford Road", "Beyers Naude Drive",
    "Nelson Mandela Drive", "Long Street", "Louis Botha Avenue", "Rivonia Road", "Kerk Straat",
    "Vilakazi Street", "Moneytow Street", "7th Street", "Protea Crescent", "Jacaranda Lane",
)

TOWNS: tuple[tuple[str, str], ...] = (
    ("Sandton", "2196"), ("Pretoria", "0002"), ("Centurion", "0157"), ("Soweto", "1804"),
    ("Durban", "4001"), ("Pietermaritzburg", "3201"), ("Umlazi", "4031"), ("Cape Town", "8001"),
    ("Stellenbosch", "7600"), ("Khayelitsha", "7784"), ("Gqeberha", "6001"), ("Mthatha", "5099"),
    ("Bloemfontein", "9301"), ("Polokwane", "0700"), ("Mbombela", "1200"), ("Potchefstroom", "2531"),
)

EMPLOYERS: tuple[str, ...] = (
    "Greenholt Group", "Sasol", "Standard Bank", "Shoprite Holdings", "Department of Education", "Eskom",
    "Vodacom", "Discovery", "Netcare", "Transnet", "City of Tshwane", "Self-employed", "Pick n Pay", "MTN",
)

EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com", "example.co.za", "mail.example.co.za", "webmail.example.co.za",
)

MOBILE_PREFIXES: tuple[str, ...] = (
    "060", "061", "062", "063", "071", "072", "073", "074", "076", "078", "079", "081", "082", "083", "084",
)

LANDLINE_PREFIXES: tuple[str, ...] = ("010", "011", "012", "021", "031", "033", "041", "051", "015", "018")

NATIONALITIES: tuple[str, ...] = ("Zimbabwe", "Lesotho", "Mozambique", "United Kingdom", "Namibia")

SCHOOL_PATTERNS: tuple[str, ...] = (
    "{town} Primary School", "Laerskool {town}", "Hoërskool {town}", "{town} High School",
    "{town} Preparatory School", "{town} College", "{town} Secondary School",
)
# fmt: on

API_TYPES: dict[int, str] = {
    1: "Admin+ API",
    8: "Debt manager",
    9: "Curriculum+ API",
    10: "Communication+ API",
}


def api_type_name(api_type_id: int) -> str:
    """d6 names each API type; the simulator knows a few and gives the rest a plain name."""
    return API_TYPES.get(api_type_id, f"API type {api_type_id}")
