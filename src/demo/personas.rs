//! The demo hub's personas (contract: "Habilitations and personas"). Fictitious people and
//! real public bodies' SIRETs as the contract fixes them.

/// One demo persona and the claims its token carries.
#[derive(Debug, Clone)]
pub struct Persona {
    /// Short id, used in `GET /token/{id}` on the development issuer.
    pub id: &'static str,
    /// Who this is, for the printed tour.
    pub title: &'static str,
    pub subject: &'static str,
    pub idp_id: Option<&'static str>,
    pub groups: &'static [&'static str],
    pub roles: &'static [&'static str],
    pub siret: Option<&'static str>,
    pub email: Option<&'static str>,
    pub given_name: Option<&'static str>,
    pub usual_name: Option<&'static str>,
    /// OAuth2 client id, for machine-to-machine personas (client credentials).
    pub client_id: Option<&'static str>,
    /// The assurance level the development issuer asserts at sign-in (`acr`; `eidas1` when
    /// unset).
    pub acr: Option<&'static str>,
}

/// Every demo persona, in the order the tour presents them.
pub const PERSONAS: &[Persona] = &[
    Persona {
        id: "chercheuse-diabete",
        title: "Researcher of projet-diabete (research, CSP L1461-1)",
        subject: "c7f3a1d2-diabete-0001",
        idp_id: Some("federation-recherche"),
        groups: &["projet-diabete"],
        roles: &[],
        siret: Some("18003502400017"),
        email: Some("claire.martin@recherche.example.fr"),
        given_name: Some("Claire"),
        usual_name: Some("Martin"),
        client_id: None,
        acr: None,
    },
    Persona {
        id: "chercheur-emploi",
        title: "Researcher of projet-emploi (research)",
        subject: "b2e4c6a8-emploi-0002",
        idp_id: Some("federation-recherche"),
        groups: &["projet-emploi"],
        roles: &[],
        siret: Some("18003502400017"),
        email: Some("karim.benali@recherche.example.fr"),
        given_name: Some("Karim"),
        usual_name: Some("Benali"),
        client_id: None,
        acr: None,
    },
    Persona {
        id: "caf",
        title: "CAF information system, habilitation caf-quotient-familial (CRPA L114-8)",
        subject: "caf-si-prestations",
        idp_id: None,
        groups: &[],
        roles: &[],
        siret: Some("13000170500016"),
        email: None,
        given_name: None,
        usual_name: None,
        client_id: Some("caf-si-prestations"),
        acr: None,
    },
    Persona {
        id: "chercheur-expire",
        title: "Researcher of projet-expire (habilitation ended 2025-01-01)",
        subject: "d9a0b1c2-expire-0003",
        idp_id: Some("federation-recherche"),
        groups: &["projet-expire"],
        roles: &[],
        siret: Some("18003502400017"),
        email: Some("paul.durand@recherche.example.fr"),
        given_name: Some("Paul"),
        usual_name: Some("Durand"),
        client_id: None,
        acr: None,
    },
    Persona {
        id: "observatoire-sante",
        title: "Analyst of observatoire-sante (aggregate-only: protected tables of stays)",
        subject: "a1b2c3d4-observatoire-0005",
        idp_id: Some("federation-recherche"),
        groups: &["observatoire-sante"],
        roles: &[],
        siret: Some("18003502400017"),
        email: Some("lea.moreau@ors.example.fr"),
        given_name: Some("Léa"),
        usual_name: Some("Moreau"),
        client_id: None,
        acr: None,
    },
    Persona {
        id: "observatoire-entreprises",
        title: "Analyst of observatoire-entreprises (aggregate-only: protected tables of establishments)",
        subject: "f0e1d2c3-observatoire-0006",
        idp_id: Some("federation-recherche"),
        groups: &["observatoire-entreprises"],
        roles: &[],
        siret: Some("18003502400017"),
        email: Some("hugo.petit@observatoire.example.fr"),
        given_name: Some("Hugo"),
        usual_name: Some("Petit"),
        client_id: None,
        acr: None,
    },
    Persona {
        id: "observatoire-fiscal",
        title: "Analyst of observatoire-fiscal (aggregate-only: protected tables of tax households)",
        subject: "b7c8d9e0-observatoire-0007",
        idp_id: Some("federation-recherche"),
        groups: &["observatoire-fiscal"],
        roles: &[],
        siret: Some("18003502400017"),
        email: Some("nina.roux@observatoire-fiscal.example.fr"),
        given_name: Some("Nina"),
        usual_name: Some("Roux"),
        client_id: None,
        acr: None,
    },
    Persona {
        id: "operateur",
        title: "Hub operator (roles: operateur)",
        subject: "e5f6a7b8-operateur-0004",
        idp_id: Some("proconnect-agents"),
        groups: &[],
        roles: &["operateur"],
        siret: Some("11000400700016"),
        email: Some("sophie.leroy@hub.example.gouv.fr"),
        given_name: Some("Sophie"),
        usual_name: Some("Leroy"),
        client_id: None,
        acr: None,
    },
    Persona {
        id: "operatrice",
        title: "A second hub operator (roles: operateur), for approvals (policy.approvals = 2)",
        subject: "a9b8c7d6-operatrice-0006",
        idp_id: Some("proconnect-agents"),
        groups: &[],
        roles: &["operateur"],
        siret: Some("11000400700016"),
        email: Some("nadia.girard@hub.example.gouv.fr"),
        given_name: Some("Nadia"),
        usual_name: Some("Girard"),
        client_id: None,
        acr: None,
    },
    Persona {
        id: "citoyen",
        title: "A citizen reading who consulted their records (/moi; the NIR is the demo's first CAF recipient)",
        subject: "f1a2b3c4-citoyen-0005",
        idp_id: Some("franceconnect"),
        groups: &[],
        roles: &[],
        siret: None,
        email: Some("camille.dubois@example.fr"),
        given_name: Some("Camille"),
        usual_name: Some("Dubois"),
        client_id: None,
        acr: Some("eidas2"),
    },
];

/// The persona whose ID token carries the NIR the development issuer was given
/// (`DevIssuer::set_citizen_nir`).
pub const CITIZEN: &str = "citoyen";

pub fn persona(id: &str) -> Option<&'static Persona> {
    PERSONAS.iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persona_sirets_are_valid() {
        for p in PERSONAS {
            if let Some(siret) = p.siret {
                assert!(
                    crate::policy::habilitation::is_siret(siret),
                    "{} has an invalid SIRET {siret}",
                    p.id
                );
            }
        }
    }
}
