//! Reference tables embedded in the demo data generator.
//!
//! Everything here is public reference data or invented vocabulary; nothing describes a real
//! person or company. Sources:
//! - communes: INSEE Code officiel géographique 2024 (codes, départements, regions), INSEE
//!   populations légales 2021 (Mayotte: 2017), La Poste base officielle des codes postaux, as
//!   republished on data.gouv.fr. Per département the table keeps the prefecture, up to two other
//!   large communes and one small commune; `weight` spreads the whole département's population
//!   over the kept communes, so regional shares match the census (Auvergne-Rhône-Alpes ≈ 12 %).
//! - birth countries: INSEE COG country codes (`99xxx`) of the most frequent countries of birth
//!   of people living in France.
//! - diagnoses: ICD-10 (CIM-10) codes with invented but plausible frequencies, lengths of stay
//!   and costs.
//! - NAF rév. 2 activity codes with invented company-name patterns.

/// One commune of residence (or of birth).
#[derive(Debug)]
pub(super) struct Commune {
    /// INSEE commune code (5 characters; `2A`/`2B` for Corsica).
    pub code: &'static str,
    /// Official name, for humans reading the table.
    #[expect(
        dead_code,
        reason = "kept so the table reads as a list of named communes"
    )]
    pub name: &'static str,
    /// Département code (2 or 3 characters).
    pub departement: &'static str,
    /// INSEE region code (2 digits).
    pub region: &'static str,
    /// Postcodes serving the commune (at least one).
    pub postcodes: &'static [&'static str],
    /// Number of inhabitants this commune stands for (its département's population shared out).
    pub weight: u32,
}

/// Communes, sorted by département, so that the communes of one département are contiguous.
#[rustfmt::skip]
pub(super) const COMMUNES: &[Commune] = &[
    Commune { code: "01053", name: "Bourg-en-Bresse", departement: "01", region: "84", postcodes: &["01000"], weight: 415364 },
    Commune { code: "01283", name: "Oyonnax", departement: "01", region: "84", postcodes: &["01100"], weight: 222831 },
    Commune { code: "01426", name: "Val-Revermont", departement: "01", region: "84", postcodes: &["01370"], weight: 25007 },
    Commune { code: "02408", name: "Laon", departement: "02", region: "32", postcodes: &["02000"], weight: 159407 },
    Commune { code: "02691", name: "Saint-Quentin", departement: "02", region: "32", postcodes: &["02100"], weight: 351437 },
    Commune { code: "02558", name: "Nouvion-en-Thiérache", departement: "02", region: "32", postcodes: &["02170"], weight: 16624 },
    Commune { code: "03190", name: "Moulins", departement: "03", region: "84", postcodes: &["03000"], weight: 117362 },
    Commune { code: "03185", name: "Montluçon", departement: "03", region: "84", postcodes: &["03100"], weight: 202299 },
    Commune { code: "03211", name: "Prémilhat", departement: "03", region: "84", postcodes: &["03410"], weight: 15211 },
    Commune { code: "04070", name: "Digne-les-Bains", departement: "04", region: "93", postcodes: &["04000"], weight: 66934 },
    Commune { code: "04112", name: "Manosque", departement: "04", region: "93", postcodes: &["04100"], weight: 89258 },
    Commune { code: "04019", name: "Barcelonnette", departement: "04", region: "93", postcodes: &["04400"], weight: 9885 },
    Commune { code: "05061", name: "Gap", departement: "05", region: "93", postcodes: &["05000"], weight: 106410 },
    Commune { code: "05023", name: "Briançon", departement: "05", region: "93", postcodes: &["05100"], weight: 27748 },
    Commune { code: "05017", name: "Bâtie-Neuve", departement: "05", region: "93", postcodes: &["05230"], weight: 6818 },
    Commune { code: "06088", name: "Nice", departement: "06", region: "93", postcodes: &["06000", "06100", "06200", "06300"], weight: 770020 },
    Commune { code: "06004", name: "Antibes", departement: "06", region: "93", postcodes: &["06160", "06600"], weight: 166200 },
    Commune { code: "06029", name: "Cannes", departement: "06", region: "93", postcodes: &["06150", "06400"], weight: 162052 },
    Commune { code: "06057", name: "Escarène", departement: "06", region: "93", postcodes: &["06440"], weight: 5670 },
    Commune { code: "07186", name: "Privas", departement: "07", region: "84", postcodes: &["07000"], weight: 101365 },
    Commune { code: "07010", name: "Annonay", departement: "07", region: "84", postcodes: &["07100"], weight: 200249 },
    Commune { code: "07245", name: "Saint-Jean-de-Muzols", departement: "07", region: "84", postcodes: &["07300"], weight: 29801 },
    Commune { code: "08105", name: "Charleville-Mézières", departement: "08", region: "44", postcodes: &["08000"], weight: 190427 },
    Commune { code: "08409", name: "Sedan", departement: "08", region: "44", postcodes: &["08200"], weight: 68163 },
    Commune { code: "08053", name: "Bazeilles", departement: "08", region: "44", postcodes: &["08140"], weight: 10269 },
    Commune { code: "09122", name: "Foix", departement: "09", region: "76", postcodes: &["09000"], weight: 51859 },
    Commune { code: "09225", name: "Pamiers", departement: "09", region: "76", postcodes: &["09100"], weight: 89756 },
    Commune { code: "09157", name: "Laroque-d'Olmes", departement: "09", region: "76", postcodes: &["09600"], weight: 12981 },
    Commune { code: "10387", name: "Troyes", departement: "10", region: "44", postcodes: &["10000"], weight: 243735 },
    Commune { code: "10323", name: "Romilly-sur-Seine", departement: "10", region: "44", postcodes: &["10100"], weight: 57325 },
    Commune { code: "10420", name: "Villenauxe-la-Grande", departement: "10", region: "44", postcodes: &["10370"], weight: 10269 },
    Commune { code: "11069", name: "Carcassonne", departement: "11", region: "76", postcodes: &["11000"], weight: 165254 },
    Commune { code: "11262", name: "Narbonne", departement: "11", region: "76", postcodes: &["11100"], weight: 201642 },
    Commune { code: "11269", name: "Ouveillan", departement: "11", region: "76", postcodes: &["11590"], weight: 9132 },
    Commune { code: "12202", name: "Rodez", departement: "12", region: "76", postcodes: &["12000"], weight: 140186 },
    Commune { code: "12145", name: "Millau", departement: "12", region: "76", postcodes: &["12100"], weight: 125738 },
    Commune { code: "12102", name: "Flavin", departement: "12", region: "76", postcodes: &["12450"], weight: 13725 },
    Commune { code: "13055", name: "Marseille", departement: "13", region: "93", postcodes: &["13001", "13002", "13003", "13004", "13005", "13006", "13007", "13008", "13009", "13010", "13011", "13012", "13013", "13014", "13015", "13016"], weight: 1672979 },
    Commune { code: "13001", name: "Aix-en-Provence", departement: "13", region: "93", postcodes: &["13080", "13090", "13100", "13290", "13540"], weight: 282596 },
    Commune { code: "13004", name: "Arles", departement: "13", region: "93", postcodes: &["13104", "13123", "13129", "13200", "13280"], weight: 96605 },
    Commune { code: "13094", name: "Saint-Étienne-du-Grès", departement: "13", region: "93", postcodes: &["13103"], weight: 4764 },
    Commune { code: "14118", name: "Caen", departement: "14", region: "28", postcodes: &["14000"], weight: 570267 },
    Commune { code: "14327", name: "Hérouville-Saint-Clair", departement: "14", region: "28", postcodes: &["14200"], weight: 117147 },
    Commune { code: "14543", name: "Rots", departement: "14", region: "28", postcodes: &["14740", "14980"], weight: 13218 },
    Commune { code: "15014", name: "Aurillac", departement: "15", region: "84", postcodes: &["15000"], weight: 131827 },
    Commune { code: "15162", name: "Riom-ès-Montagnes", departement: "15", region: "84", postcodes: &["15400"], weight: 12399 },
    Commune { code: "16015", name: "Angoulême", departement: "16", region: "75", postcodes: &["16000"], weight: 232504 },
    Commune { code: "16102", name: "Cognac", departement: "16", region: "75", postcodes: &["16100"], weight: 104397 },
    Commune { code: "16230", name: "Montmoreau", departement: "16", region: "75", postcodes: &["16190"], weight: 13966 },
    Commune { code: "17300", name: "Rochelle", departement: "17", region: "75", postcodes: &["17000"], weight: 487585 },
    Commune { code: "17415", name: "Saintes", departement: "17", region: "75", postcodes: &["17100"], weight: 158429 },
    Commune { code: "17425", name: "Semussac", departement: "17", region: "75", postcodes: &["17120"], weight: 15391 },
    Commune { code: "18033", name: "Bourges", departement: "18", region: "24", postcodes: &["18000"], weight: 208436 },
    Commune { code: "18279", name: "Vierzon", departement: "18", region: "24", postcodes: &["18100"], weight: 82940 },
    Commune { code: "18223", name: "Saint-Martin-d'Auxigny", departement: "18", region: "24", postcodes: &["18110"], weight: 8196 },
    Commune { code: "19272", name: "Tulle", departement: "19", region: "75", postcodes: &["19000"], weight: 53210 },
    Commune { code: "19031", name: "Brive-la-Gaillarde", departement: "19", region: "75", postcodes: &["19100"], weight: 177211 },
    Commune { code: "19278", name: "Varetz", departement: "19", region: "75", postcodes: &["19240"], weight: 9363 },
    Commune { code: "21231", name: "Dijon", departement: "21", region: "27", postcodes: &["21000"], weight: 469116 },
    Commune { code: "21054", name: "Beaune", departement: "21", region: "27", postcodes: &["21200"], weight: 58974 },
    Commune { code: "21485", name: "Plombières-lès-Dijon", departement: "21", region: "27", postcodes: &["21370"], weight: 7413 },
    Commune { code: "22278", name: "Saint-Brieuc", departement: "22", region: "53", postcodes: &["22000"], weight: 399548 },
    Commune { code: "22113", name: "Lannion", departement: "22", region: "53", postcodes: &["22300"], weight: 183801 },
    Commune { code: "22158", name: "Guerlédan", departement: "22", region: "53", postcodes: &["22530"], weight: 22569 },
    Commune { code: "23096", name: "Guéret", departement: "23", region: "75", postcodes: &["23000"], weight: 96865 },
    Commune { code: "23193", name: "Sainte-Feyre", departement: "23", region: "75", postcodes: &["23000"], weight: 18837 },
    Commune { code: "24322", name: "Périgueux", departement: "24", region: "75", postcodes: &["24000"], weight: 209319 },
    Commune { code: "24037", name: "Bergerac", departement: "24", region: "75", postcodes: &["24100"], weight: 186675 },
    Commune { code: "24335", name: "Port-Sainte-Foy-et-Ponchapt", departement: "24", region: "75", postcodes: &["33220"], weight: 17736 },
    Commune { code: "25056", name: "Besançon", departement: "25", region: "27", postcodes: &["25000"], weight: 442805 },
    Commune { code: "25388", name: "Montbéliard", departement: "25", region: "27", postcodes: &["25200"], weight: 95000 },
    Commune { code: "25512", name: "Russey", departement: "25", region: "27", postcodes: &["25210"], weight: 9291 },
    Commune { code: "26362", name: "Valence", departement: "26", region: "84", postcodes: &["26000"], weight: 238747 },
    Commune { code: "26198", name: "Montélimar", departement: "26", region: "84", postcodes: &["26200"], weight: 149577 },
    Commune { code: "26281", name: "Romans-sur-Isère", departement: "26", region: "84", postcodes: &["26100"], weight: 121852 },
    Commune { code: "26191", name: "Montboucher-sur-Jabron", departement: "26", region: "84", postcodes: &["26740"], weight: 9282 },
    Commune { code: "27229", name: "Évreux", departement: "27", region: "28", postcodes: &["27000"], weight: 380089 },
    Commune { code: "27681", name: "Vernon", departement: "27", region: "28", postcodes: &["27200"], weight: 197266 },
    Commune { code: "27191", name: "Clef Vallée d'Eure", departement: "27", region: "28", postcodes: &["27490"], weight: 19837 },
    Commune { code: "28085", name: "Chartres", departement: "28", region: "24", postcodes: &["28000"], weight: 230815 },
    Commune { code: "28134", name: "Dreux", departement: "28", region: "24", postcodes: &["28100"], weight: 185381 },
    Commune { code: "28199", name: "Janville-en-Beauce", departement: "28", region: "24", postcodes: &["28310"], weight: 15081 },
    Commune { code: "29232", name: "Quimper", departement: "29", region: "53", postcodes: &["29000"], weight: 284998 },
    Commune { code: "29019", name: "Brest", departement: "29", region: "53", postcodes: &["29200"], weight: 625234 },
    Commune { code: "29068", name: "Guiclan", departement: "29", region: "53", postcodes: &["29410"], weight: 11406 },
    Commune { code: "2A004", name: "Ajaccio", departement: "2A", region: "94", postcodes: &["20000", "20090", "20167"], weight: 137003 },
    Commune { code: "2A247", name: "Porto-Vecchio", departement: "2A", region: "94", postcodes: &["20137"], weight: 20839 },
    Commune { code: "2A362", name: "Zonza", departement: "2A", region: "94", postcodes: &["20124", "20144"], weight: 5100 },
    Commune { code: "2B033", name: "Bastia", departement: "2B", region: "94", postcodes: &["20200", "20600"], weight: 147622 },
    Commune { code: "2B042", name: "Borgo", departement: "2B", region: "94", postcodes: &["20290"], weight: 29296 },
    Commune { code: "2B342", name: "Ventiseri", departement: "2B", region: "94", postcodes: &["20240"], weight: 7737 },
    Commune { code: "30189", name: "Nîmes", departement: "30", region: "76", postcodes: &["30000", "30900"], weight: 576042 },
    Commune { code: "30007", name: "Alès", departement: "30", region: "76", postcodes: &["30100"], weight: 170715 },
    Commune { code: "30061", name: "Calmette", departement: "30", region: "76", postcodes: &["30190"], weight: 9786 },
    Commune { code: "31555", name: "Toulouse", departement: "31", region: "76", postcodes: &["31000", "31100", "31200", "31300", "31400", "31500"], weight: 1322446 },
    Commune { code: "31149", name: "Colomiers", departement: "31", region: "76", postcodes: &["31770"], weight: 105357 },
    Commune { code: "31484", name: "Saint-Geniès-Bellevue", departement: "31", region: "76", postcodes: &["31180"], weight: 6564 },
    Commune { code: "32013", name: "Auch", departement: "32", region: "76", postcodes: &["32000"], weight: 127138 },
    Commune { code: "32160", name: "Isle-Jourdain", departement: "32", region: "76", postcodes: &["32600"], weight: 51449 },
    Commune { code: "32307", name: "Pavie", departement: "32", region: "76", postcodes: &["32550"], weight: 13850 },
    Commune { code: "33063", name: "Bordeaux", departement: "33", region: "75", postcodes: &["33000", "33100", "33200", "33300", "33800"], weight: 1065036 },
    Commune { code: "33281", name: "Mérignac", departement: "33", region: "75", postcodes: &["33700"], weight: 308070 },
    Commune { code: "33318", name: "Pessac", departement: "33", region: "75", postcodes: &["33600"], weight: 271584 },
    Commune { code: "33492", name: "Saint-Yzan-de-Soudiac", departement: "33", region: "75", postcodes: &["33920"], weight: 10280 },
    Commune { code: "34172", name: "Montpellier", departement: "34", region: "76", postcodes: &["34000", "34070", "34080", "34090"], weight: 845300 },
    Commune { code: "34032", name: "Béziers", departement: "34", region: "76", postcodes: &["34500"], weight: 224537 },
    Commune { code: "34301", name: "Sète", departement: "34", region: "76", postcodes: &["34200"], weight: 124961 },
    Commune { code: "34073", name: "Cers", departement: "34", region: "76", postcodes: &["34420"], weight: 7085 },
    Commune { code: "35238", name: "Rennes", departement: "35", region: "53", postcodes: &["35000", "35200", "35700"], weight: 899306 },
    Commune { code: "35288", name: "Saint-Malo", departement: "35", region: "53", postcodes: &["35400"], weight: 189078 },
    Commune { code: "35014", name: "Bais", departement: "35", region: "53", postcodes: &["35680"], weight: 9941 },
    Commune { code: "36044", name: "Châteauroux", departement: "36", region: "24", postcodes: &["36000"], weight: 164889 },
    Commune { code: "36088", name: "Issoudun", departement: "36", region: "24", postcodes: &["36100"], weight: 42182 },
    Commune { code: "36241", name: "Villedieu-sur-Indre", departement: "36", region: "24", postcodes: &["36320"], weight: 10158 },
    Commune { code: "37261", name: "Tours", departement: "37", region: "24", postcodes: &["37000", "37100", "37200"], weight: 472523 },
    Commune { code: "37122", name: "Joué-lès-Tours", departement: "37", region: "24", postcodes: &["37300"], weight: 131066 },
    Commune { code: "37124", name: "Larçay", departement: "37", region: "24", postcodes: &["37270"], weight: 8571 },
    Commune { code: "38185", name: "Grenoble", departement: "38", region: "84", postcodes: &["38000", "38100"], weight: 860020 },
    Commune { code: "38421", name: "Saint-Martin-d'Hères", departement: "38", region: "84", postcodes: &["38400"], weight: 210007 },
    Commune { code: "38151", name: "Échirolles", departement: "38", region: "84", postcodes: &["38130"], weight: 201241 },
    Commune { code: "38530", name: "Vaulx-Milieu", departement: "38", region: "84", postcodes: &["38090"], weight: 13680 },
    Commune { code: "39300", name: "Lons-le-Saunier", departement: "39", region: "27", postcodes: &["39000"], weight: 101794 },
    Commune { code: "39198", name: "Dole", departement: "39", region: "27", postcodes: &["39100"], weight: 142002 },
    Commune { code: "39500", name: "Salins-les-Bains", departement: "39", region: "27", postcodes: &["39110"], weight: 14759 },
    Commune { code: "40192", name: "Mont-de-Marsan", departement: "40", region: "75", postcodes: &["40000"], weight: 237948 },
    Commune { code: "40088", name: "Dax", departement: "40", region: "75", postcodes: &["40100"], weight: 165596 },
    Commune { code: "40075", name: "Castets", departement: "40", region: "75", postcodes: &["40260"], weight: 19432 },
    Commune { code: "41018", name: "Blois", departement: "41", region: "24", postcodes: &["41000"], weight: 228005 },
    Commune { code: "41194", name: "Romorantin-Lanthenay", departement: "41", region: "24", postcodes: &["41200"], weight: 88230 },
    Commune { code: "41276", name: "Villebarou", departement: "41", region: "24", postcodes: &["41000"], weight: 12269 },
    Commune { code: "42218", name: "Saint-Étienne", departement: "42", region: "84", postcodes: &["42000", "42100", "42230"], weight: 542190 },
    Commune { code: "42207", name: "Saint-Chamond", departement: "42", region: "84", postcodes: &["42400"], weight: 110084 },
    Commune { code: "42187", name: "Roanne", departement: "42", region: "84", postcodes: &["42300"], weight: 109124 },
    Commune { code: "42211", name: "Saint-Cyprien", departement: "42", region: "84", postcodes: &["42160"], weight: 7631 },
    Commune { code: "43157", name: "Puy-en-Velay", departement: "43", region: "84", postcodes: &["43000"], weight: 141056 },
    Commune { code: "43137", name: "Monistrol-sur-Loire", departement: "43", region: "84", postcodes: &["43120"], weight: 67579 },
    Commune { code: "43046", name: "Chadrac", departement: "43", region: "84", postcodes: &["43770"], weight: 18649 },
    Commune { code: "44109", name: "Nantes", departement: "44", region: "52", postcodes: &["44000", "44100", "44200", "44300"], weight: 1053329 },
    Commune { code: "44184", name: "Saint-Nazaire", departement: "44", region: "52", postcodes: &["44600"], weight: 234835 },
    Commune { code: "44162", name: "Saint-Herblain", departement: "44", region: "52", postcodes: &["44800"], weight: 161442 },
    Commune { code: "44125", name: "Piriac-sur-Mer", departement: "44", region: "52", postcodes: &["44420"], weight: 8200 },
    Commune { code: "45234", name: "Orléans", departement: "45", region: "24", postcodes: &["45000", "45100"], weight: 562114 },
    Commune { code: "45232", name: "Olivet", departement: "45", region: "24", postcodes: &["45160"], weight: 110165 },
    Commune { code: "45188", name: "Loury", departement: "45", region: "24", postcodes: &["45470"], weight: 12282 },
    Commune { code: "46042", name: "Cahors", departement: "46", region: "76", postcodes: &["46000"], weight: 108848 },
    Commune { code: "46102", name: "Figeac", departement: "46", region: "76", postcodes: &["46100"], weight: 52800 },
    Commune { code: "46225", name: "Prayssac", departement: "46", region: "76", postcodes: &["46220"], weight: 13295 },
    Commune { code: "47001", name: "Agen", departement: "47", region: "75", postcodes: &["47000"], weight: 190243 },
    Commune { code: "47323", name: "Villeneuve-sur-Lot", departement: "47", region: "75", postcodes: &["47300"], weight: 126667 },
    Commune { code: "47203", name: "Penne-d'Agenais", departement: "47", region: "75", postcodes: &["47140"], weight: 14319 },
    Commune { code: "48095", name: "Mende", departement: "48", region: "76", postcodes: &["48000"], weight: 64478 },
    Commune { code: "48009", name: "Peyre en Aubrac", departement: "48", region: "76", postcodes: &["48130"], weight: 12041 },
    Commune { code: "49007", name: "Angers", departement: "49", region: "52", postcodes: &["49000", "49100"], weight: 606724 },
    Commune { code: "49099", name: "Cholet", departement: "49", region: "52", postcodes: &["49300"], weight: 208203 },
    Commune { code: "49138", name: "Bois d'Anjou", departement: "49", region: "52", postcodes: &["49250"], weight: 9816 },
    Commune { code: "50502", name: "Saint-Lô", departement: "50", region: "28", postcodes: &["50000"], weight: 96283 },
    Commune { code: "50129", name: "Cherbourg-en-Cotentin", departement: "50", region: "28", postcodes: &["50100", "50110", "50120", "50130", "50460", "50470"], weight: 386701 },
    Commune { code: "50444", name: "Saint-Amand-Villages", departement: "50", region: "28", postcodes: &["50160"], weight: 12524 },
    Commune { code: "51108", name: "Châlons-en-Champagne", departement: "51", region: "44", postcodes: &["51000"], weight: 109922 },
    Commune { code: "51454", name: "Reims", departement: "51", region: "44", postcodes: &["51100"], weight: 449388 },
    Commune { code: "51043", name: "Bazancourt", departement: "51", region: "44", postcodes: &["51110"], weight: 5982 },
    Commune { code: "52121", name: "Chaumont", departement: "52", region: "44", postcodes: &["52000"], weight: 78726 },
    Commune { code: "52448", name: "Saint-Dizier", departement: "52", region: "44", postcodes: &["52100"], weight: 83692 },
    Commune { code: "52093", name: "Chalindrey", departement: "52", region: "44", postcodes: &["52600"], weight: 8624 },
    Commune { code: "53130", name: "Laval", departement: "53", region: "52", postcodes: &["53000"], weight: 220563 },
    Commune { code: "53062", name: "Château-Gontier-sur-Mayenne", departement: "53", region: "52", postcodes: &["53200"], weight: 74221 },
    Commune { code: "53188", name: "Renazé", departement: "53", region: "52", postcodes: &["53800"], weight: 11149 },
    Commune { code: "54395", name: "Nancy", departement: "54", region: "44", postcodes: &["54000", "54100"], weight: 560432 },
    Commune { code: "54547", name: "Vandœuvre-lès-Nancy", departement: "54", region: "44", postcodes: &["54500"], weight: 158771 },
    Commune { code: "54029", name: "Audun-le-Roman", departement: "54", region: "44", postcodes: &["54560"], weight: 13282 },
    Commune { code: "55029", name: "Bar-le-Duc", departement: "55", region: "44", postcodes: &["55000"], weight: 78881 },
    Commune { code: "55545", name: "Verdun", departement: "55", region: "44", postcodes: &["55100"], weight: 89750 },
    Commune { code: "55502", name: "Stenay", departement: "55", region: "44", postcodes: &["55700"], weight: 13288 },
    Commune { code: "56260", name: "Vannes", departement: "56", region: "53", postcodes: &["56000"], weight: 364469 },
    Commune { code: "56121", name: "Lorient", departement: "56", region: "53", postcodes: &["56100"], weight: 387414 },
    Commune { code: "56124", name: "Malestroit", departement: "56", region: "53", postcodes: &["56140"], weight: 16804 },
    Commune { code: "57463", name: "Metz", departement: "57", region: "44", postcodes: &["57000", "57050", "57070"], weight: 766665 },
    Commune { code: "57672", name: "Thionville", departement: "57", region: "44", postcodes: &["57100"], weight: 267426 },
    Commune { code: "57013", name: "Alsting", departement: "57", region: "44", postcodes: &["57515"], weight: 15850 },
    Commune { code: "58194", name: "Nevers", departement: "58", region: "27", postcodes: &["58000"], weight: 148380 },
    Commune { code: "58086", name: "Cosne-Cours-sur-Loire", departement: "58", region: "27", postcodes: &["58200"], weight: 42652 },
    Commune { code: "58131", name: "Guérigny", departement: "58", region: "27", postcodes: &["58130"], weight: 11385 },
    Commune { code: "59350", name: "Lille", departement: "59", region: "32", postcodes: &["59000", "59160", "59260", "59777", "59800"], weight: 1414091 },
    Commune { code: "59599", name: "Tourcoing", departement: "59", region: "32", postcodes: &["59200"], weight: 591486 },
    Commune { code: "59512", name: "Roubaix", departement: "59", region: "32", postcodes: &["59100"], weight: 590775 },
    Commune { code: "59124", name: "Camphin-en-Pévèle", departement: "59", region: "32", postcodes: &["59780"], weight: 14941 },
    Commune { code: "60057", name: "Beauvais", departement: "60", region: "32", postcodes: &["60000"], weight: 346240 },
    Commune { code: "60159", name: "Compiègne", departement: "60", region: "32", postcodes: &["60200"], weight: 246767 },
    Commune { code: "60175", name: "Creil", departement: "60", region: "32", postcodes: &["60100"], weight: 220571 },
    Commune { code: "60313", name: "Hermes", departement: "60", region: "32", postcodes: &["60370"], weight: 15260 },
    Commune { code: "61001", name: "Alençon", departement: "61", region: "28", postcodes: &["61000"], weight: 166436 },
    Commune { code: "61169", name: "Flers", departement: "61", region: "28", postcodes: &["61100"], weight: 94319 },
    Commune { code: "61117", name: "Condé-sur-Sarthe", departement: "61", region: "28", postcodes: &["61250"], weight: 16217 },
    Commune { code: "62041", name: "Arras", departement: "62", region: "32", postcodes: &["62000"], weight: 405858 },
    Commune { code: "62193", name: "Calais", departement: "62", region: "32", postcodes: &["62100"], weight: 641941 },
    Commune { code: "62160", name: "Boulogne-sur-Mer", departement: "62", region: "32", postcodes: &["62200"], weight: 389757 },
    Commune { code: "62376", name: "Gonnehem", departement: "62", region: "32", postcodes: &["62920"], weight: 23885 },
    Commune { code: "63113", name: "Clermont-Ferrand", departement: "63", region: "84", postcodes: &["63000", "63100"], weight: 573919 },
    Commune { code: "63124", name: "Cournon-d'Auvergne", departement: "63", region: "84", postcodes: &["63800"], weight: 78663 },
    Commune { code: "63417", name: "Sayat", departement: "63", region: "84", postcodes: &["63530"], weight: 9704 },
    Commune { code: "64445", name: "Pau", departement: "64", region: "75", postcodes: &["64000"], weight: 308080 },
    Commune { code: "64102", name: "Bayonne", departement: "64", region: "75", postcodes: &["64100"], weight: 210870 },
    Commune { code: "64024", name: "Anglet", departement: "64", region: "75", postcodes: &["64600"], weight: 164514 },
    Commune { code: "64399", name: "Montardon", departement: "64", region: "75", postcodes: &["64121"], weight: 9562 },
    Commune { code: "65440", name: "Tarbes", departement: "65", region: "76", postcodes: &["65000"], weight: 169718 },
    Commune { code: "65286", name: "Lourdes", departement: "65", region: "76", postcodes: &["65100"], weight: 52161 },
    Commune { code: "65344", name: "Ossun", departement: "65", region: "76", postcodes: &["65380"], weight: 9078 },
    Commune { code: "66136", name: "Perpignan", departement: "66", region: "76", postcodes: &["66000", "66100"], weight: 432654 },
    Commune { code: "66037", name: "Canet-en-Roussillon", departement: "66", region: "76", postcodes: &["66140"], weight: 45552 },
    Commune { code: "66053", name: "Collioure", departement: "66", region: "76", postcodes: &["66190"], weight: 9101 },
    Commune { code: "67482", name: "Strasbourg", departement: "67", region: "44", postcodes: &["67000", "67100", "67200"], weight: 923347 },
    Commune { code: "67180", name: "Haguenau", departement: "67", region: "44", postcodes: &["67500"], weight: 113202 },
    Commune { code: "67447", name: "Schiltigheim", departement: "67", region: "44", postcodes: &["67300"], weight: 108175 },
    Commune { code: "67001", name: "Achenheim", departement: "67", region: "44", postcodes: &["67204"], weight: 7937 },
    Commune { code: "68066", name: "Colmar", departement: "68", region: "44", postcodes: &["68000"], weight: 294240 },
    Commune { code: "68224", name: "Mulhouse", departement: "68", region: "44", postcodes: &["68100", "68200"], weight: 461978 },
    Commune { code: "68036", name: "Biesheim", departement: "68", region: "44", postcodes: &["68600"], weight: 10865 },
    Commune { code: "69123", name: "Lyon", departement: "69", region: "84", postcodes: &["69001", "69002", "69003", "69004", "69005", "69006", "69007", "69008", "69009"], weight: 1322092 },
    Commune { code: "69266", name: "Villeurbanne", departement: "69", region: "84", postcodes: &["69100"], weight: 397268 },
    Commune { code: "69259", name: "Vénissieux", departement: "69", region: "84", postcodes: &["69200"], weight: 168000 },
    Commune { code: "69171", name: "Sain-Bel", departement: "69", region: "84", postcodes: &["69210"], weight: 6331 },
    Commune { code: "70550", name: "Vesoul", departement: "70", region: "27", postcodes: &["70000"], weight: 126337 },
    Commune { code: "70285", name: "Héricourt", departement: "70", region: "27", postcodes: &["70400"], weight: 87493 },
    Commune { code: "70026", name: "Arc-lès-Gray", departement: "70", region: "27", postcodes: &["70100"], weight: 20466 },
    Commune { code: "71270", name: "Mâcon", departement: "71", region: "27", postcodes: &["71000"], weight: 230949 },
    Commune { code: "71076", name: "Chalon-sur-Saône", departement: "71", region: "27", postcodes: &["71100"], weight: 301900 },
    Commune { code: "71154", name: "Crissey", departement: "71", region: "27", postcodes: &["71530"], weight: 16439 },
    Commune { code: "72181", name: "Mans", departement: "72", region: "52", postcodes: &["72000", "72100"], weight: 505317 },
    Commune { code: "72154", name: "Flèche", departement: "72", region: "52", postcodes: &["72200"], weight: 52053 },
    Commune { code: "72373", name: "Vibraye", departement: "72", region: "52", postcodes: &["72320"], weight: 8688 },
    Commune { code: "73065", name: "Chambéry", departement: "73", region: "84", postcodes: &["73000"], weight: 281153 },
    Commune { code: "73008", name: "Aix-les-Bains", departement: "73", region: "84", postcodes: &["73100"], weight: 149717 },
    Commune { code: "73261", name: "Saint-Michel-de-Maurienne", departement: "73", region: "84", postcodes: &["73140"], weight: 11597 },
    Commune { code: "74010", name: "Annecy", departement: "74", region: "84", postcodes: &["74000", "74370", "74600", "74940", "74960"], weight: 529876 },
    Commune { code: "74012", name: "Annemasse", departement: "74", region: "84", postcodes: &["74100"], weight: 152540 },
    Commune { code: "74281", name: "Thonon-les-Bains", departement: "74", region: "84", postcodes: &["74200"], weight: 148956 },
    Commune { code: "74154", name: "Lugrin", departement: "74", region: "84", postcodes: &["74500"], weight: 10110 },
    Commune { code: "75056", name: "Paris", departement: "75", region: "11", postcodes: &["75001", "75002", "75003", "75004", "75005", "75006", "75007", "75008", "75009", "75010", "75011", "75012", "75013", "75014", "75015", "75016", "75017", "75018", "75019", "75020", "75116"], weight: 2133111 },
    Commune { code: "76540", name: "Rouen", departement: "76", region: "28", postcodes: &["76000", "76100"], weight: 506909 },
    Commune { code: "76351", name: "Havre", departement: "76", region: "28", postcodes: &["76600", "76610", "76620"], weight: 737852 },
    Commune { code: "76296", name: "Gainneville", departement: "76", region: "28", postcodes: &["76700"], weight: 11157 },
    Commune { code: "77288", name: "Melun", departement: "77", region: "11", postcodes: &["77000"], weight: 393584 },
    Commune { code: "77284", name: "Meaux", departement: "77", region: "11", postcodes: &["77100"], weight: 516666 },
    Commune { code: "77108", name: "Chelles", departement: "77", region: "11", postcodes: &["77500"], weight: 504524 },
    Commune { code: "77226", name: "Héricy", departement: "77", region: "11", postcodes: &["77850"], weight: 23327 },
    Commune { code: "78646", name: "Versailles", departement: "78", region: "11", postcodes: &["78000"], weight: 669386 },
    Commune { code: "78586", name: "Sartrouville", departement: "78", region: "11", postcodes: &["78500"], weight: 410183 },
    Commune { code: "78361", name: "Mantes-la-Jolie", departement: "78", region: "11", postcodes: &["78200"], weight: 356680 },
    Commune { code: "78265", name: "Garancières", departement: "78", region: "11", postcodes: &["78890"], weight: 20117 },
    Commune { code: "79191", name: "Niort", departement: "79", region: "75", postcodes: &["79000"], weight: 272180 },
    Commune { code: "79049", name: "Bressuire", departement: "79", region: "75", postcodes: &["79300"], weight: 91352 },
    Commune { code: "79103", name: "Courlay", departement: "79", region: "75", postcodes: &["79440"], weight: 11055 },
    Commune { code: "80021", name: "Amiens", departement: "80", region: "32", postcodes: &["80000", "80080", "80090"], weight: 476819 },
    Commune { code: "80001", name: "Abbeville", departement: "80", region: "32", postcodes: &["80100"], weight: 80627 },
    Commune { code: "80632", name: "Pont-de-Metz", departement: "80", region: "32", postcodes: &["80480"], weight: 8807 },
    Commune { code: "81004", name: "Albi", departement: "81", region: "76", postcodes: &["81000"], weight: 206184 },
    Commune { code: "81065", name: "Castres", departement: "81", region: "76", postcodes: &["81100"], weight: 176978 },
    Commune { code: "81002", name: "Aiguefonde", departement: "81", region: "76", postcodes: &["81200"], weight: 10410 },
    Commune { code: "82121", name: "Montauban", departement: "82", region: "76", postcodes: &["82000"], weight: 208037 },
    Commune { code: "82033", name: "Castelsarrasin", departement: "82", region: "76", postcodes: &["82100"], weight: 47636 },
    Commune { code: "82169", name: "Saint-Nicolas-de-la-Grave", departement: "82", region: "76", postcodes: &["82210"], weight: 7704 },
    Commune { code: "83137", name: "Toulon", departement: "83", region: "93", postcodes: &["83000", "83100", "83200"], weight: 652803 },
    Commune { code: "83126", name: "Seyne-sur-Mer", departement: "83", region: "93", postcodes: &["83500"], weight: 227051 },
    Commune { code: "83061", name: "Fréjus", departement: "83", region: "93", postcodes: &["83370", "83600"], weight: 206500 },
    Commune { code: "83102", name: "Régusse", departement: "83", region: "93", postcodes: &["83630"], weight: 8983 },
    Commune { code: "84007", name: "Avignon", departement: "84", region: "93", postcodes: &["84000", "84140"], weight: 412629 },
    Commune { code: "84031", name: "Carpentras", departement: "84", region: "93", postcodes: &["84200"], weight: 140553 },
    Commune { code: "84083", name: "Mornas", departement: "84", region: "93", postcodes: &["84550"], weight: 11384 },
    Commune { code: "85191", name: "Roche-sur-Yon", departement: "85", region: "52", postcodes: &["85000"], weight: 363090 },
    Commune { code: "85194", name: "Sables-d'Olonne", departement: "85", region: "52", postcodes: &["85100", "85180", "85340"], weight: 319811 },
    Commune { code: "85064", name: "Chauché", departement: "85", region: "52", postcodes: &["85140"], weight: 16558 },
    Commune { code: "86194", name: "Poitiers", departement: "86", region: "75", postcodes: &["86000"], weight: 319671 },
    Commune { code: "86066", name: "Châtellerault", departement: "86", region: "75", postcodes: &["86100"], weight: 110822 },
    Commune { code: "86213", name: "Rouillé", departement: "86", region: "75", postcodes: &["86480"], weight: 8892 },
    Commune { code: "87085", name: "Limoges", departement: "87", region: "75", postcodes: &["87000", "87100", "87280"], weight: 335758 },
    Commune { code: "87154", name: "Saint-Junien", departement: "87", region: "75", postcodes: &["87200"], weight: 29464 },
    Commune { code: "87110", name: "Oradour-sur-Glane", departement: "87", region: "75", postcodes: &["87520"], weight: 6469 },
    Commune { code: "88160", name: "Épinal", departement: "88", region: "44", postcodes: &["88000"], weight: 215197 },
    Commune { code: "88413", name: "Saint-Dié-des-Vosges", departement: "88", region: "44", postcodes: &["88100"], weight: 128772 },
    Commune { code: "88165", name: "Étival-Clairefontaine", departement: "88", region: "44", postcodes: &["88480"], weight: 16704 },
    Commune { code: "89024", name: "Auxerre", departement: "89", region: "27", postcodes: &["89000", "89290"], weight: 180091 },
    Commune { code: "89387", name: "Sens", departement: "89", region: "27", postcodes: &["89100"], weight: 139991 },
    Commune { code: "89419", name: "Toucy", departement: "89", region: "27", postcodes: &["89130"], weight: 13303 },
    Commune { code: "90010", name: "Belfort", departement: "90", region: "27", postcodes: &["90000"], weight: 132006 },
    Commune { code: "90022", name: "Châtenois-les-Forges", departement: "90", region: "27", postcodes: &["90700"], weight: 7648 },
    Commune { code: "91228", name: "Évry-Courcouronnes", departement: "91", region: "11", postcodes: &["91000", "91080"], weight: 504539 },
    Commune { code: "91174", name: "Corbeil-Essonnes", departement: "91", region: "11", postcodes: &["91100"], weight: 401660 },
    Commune { code: "91377", name: "Massy", departement: "91", region: "11", postcodes: &["91300"], weight: 388539 },
    Commune { code: "91666", name: "Villejust", departement: "91", region: "11", postcodes: &["91140"], weight: 19030 },
    Commune { code: "92050", name: "Nanterre", departement: "92", region: "11", postcodes: &["92000"], weight: 515926 },
    Commune { code: "92012", name: "Boulogne-Billancourt", departement: "92", region: "11", postcodes: &["92100"], weight: 634940 },
    Commune { code: "92004", name: "Asnières-sur-Seine", departement: "92", region: "11", postcodes: &["92600"], weight: 475177 },
    Commune { code: "92047", name: "Marnes-la-Coquette", departement: "92", region: "11", postcodes: &["92430"], weight: 9248 },
    Commune { code: "93008", name: "Bobigny", departement: "93", region: "11", postcodes: &["93000"], weight: 321769 },
    Commune { code: "93066", name: "Saint-Denis", departement: "93", region: "11", postcodes: &["93200", "93210"], weight: 665923 },
    Commune { code: "93048", name: "Montreuil", departement: "93", region: "11", postcodes: &["93100"], weight: 651388 },
    Commune { code: "93015", name: "Coubron", departement: "93", region: "11", postcodes: &["93470"], weight: 29590 },
    Commune { code: "94028", name: "Créteil", departement: "94", region: "11", postcodes: &["94000"], weight: 488103 },
    Commune { code: "94081", name: "Vitry-sur-Seine", departement: "94", region: "11", postcodes: &["94400"], weight: 504984 },
    Commune { code: "94017", name: "Champigny-sur-Marne", departement: "94", region: "11", postcodes: &["94500"], weight: 407976 },
    Commune { code: "94056", name: "Périgny", departement: "94", region: "11", postcodes: &["94520"], weight: 14304 },
    Commune { code: "95500", name: "Pontoise", departement: "95", region: "11", postcodes: &["95000", "95300"], weight: 188069 },
    Commune { code: "95018", name: "Argenteuil", departement: "95", region: "11", postcodes: &["95100"], weight: 643693 },
    Commune { code: "95127", name: "Cergy", departement: "95", region: "11", postcodes: &["95000", "95800"], weight: 410322 },
    Commune { code: "95580", name: "Saint-Witz", departement: "95", region: "11", postcodes: &["95470"], weight: 14522 },
    Commune { code: "97105", name: "Basse-Terre", departement: "971", region: "01", postcodes: &["97100"], weight: 39422 },
    Commune { code: "97101", name: "Abymes", departement: "971", region: "01", postcodes: &["97139", "97142"], weight: 210101 },
    Commune { code: "97103", name: "Baie-Mahault", departement: "971", region: "01", postcodes: &["97122"], weight: 124602 },
    Commune { code: "97126", name: "Saint-Louis", departement: "971", region: "01", postcodes: &["97134"], weight: 10191 },
    Commune { code: "97209", name: "Fort-de-France", departement: "972", region: "02", postcodes: &["97200", "97234"], weight: 230356 },
    Commune { code: "97213", name: "Lamentin", departement: "972", region: "02", postcodes: &["97232"], weight: 121882 },
    Commune { code: "97203", name: "Basse-Pointe", departement: "972", region: "02", postcodes: &["97218"], weight: 8511 },
    Commune { code: "97302", name: "Cayenne", departement: "973", region: "03", postcodes: &["97300"], weight: 120186 },
    Commune { code: "97311", name: "Saint-Laurent-du-Maroni", departement: "973", region: "03", postcodes: &["97320"], weight: 95156 },
    Commune { code: "97307", name: "Matoury", departement: "973", region: "03", postcodes: &["97351"], weight: 65918 },
    Commune { code: "97312", name: "Sinnamary", departement: "973", region: "03", postcodes: &["97315"], weight: 5359 },
    Commune { code: "97411", name: "Saint-Denis", departement: "974", region: "04", postcodes: &["97400", "97417", "97490"], weight: 386144 },
    Commune { code: "97415", name: "Saint-Paul", departement: "974", region: "04", postcodes: &["97411", "97422", "97423", "97434", "97435", "97460"], weight: 262578 },
    Commune { code: "97416", name: "Saint-Pierre", departement: "974", region: "04", postcodes: &["97410", "97432"], weight: 209775 },
    Commune { code: "97417", name: "Saint-Philippe", departement: "974", region: "04", postcodes: &["97442"], weight: 12660 },
    Commune { code: "97611", name: "Mamoudzou", departement: "976", region: "06", postcodes: &["97600", "97605"], weight: 203571 },
    Commune { code: "97610", name: "Koungou", departement: "976", region: "06", postcodes: &["97600"], weight: 91634 },
    Commune { code: "97601", name: "Acoua", departement: "976", region: "06", postcodes: &["97630"], weight: 14795 },
];

/// Frequent French surnames, most frequent first (drawn with a Zipf-like weight).
#[rustfmt::skip]
pub(super) const SURNAMES: &[&str] = &[
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU",
    "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL",
    "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT", "FONTAINE", "ROUSSEAU", "VINCENT",
    "MULLER", "LEFEVRE", "FAURE", "ANDRE", "MERCIER", "BLANC", "GUERIN", "BOYER", "GARNIER",
    "CHEVALIER", "FRANCOIS", "LEGRAND", "GAUTHIER", "GARCIA", "PERRIN", "ROBIN", "CLEMENT",
    "MORIN", "NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "GAUTIER", "MASSON", "MARCHAND", "DUVAL",
    "DENIS", "DUMONT", "MARIE", "LEMAIRE", "NOEL", "MEYER", "DUFOUR", "MEUNIER", "BRUN",
    "BLANCHARD", "GIRAUD", "JOLY", "RIVIERE", "LUCAS", "BRUNET", "GAILLARD", "BARBIER", "ARNAUD",
    "MARTINEZ", "GERARD", "ROCHE", "RENARD", "SCHMITT", "ROY", "LEROUX", "COLIN", "VIDAL",
    "CARON", "PICARD", "ROGER", "FABRE", "AUBERT", "LEMOINE", "RENAUD", "DUMAS", "LACROIX",
    "OLIVIER", "PHILIPPE", "BOURGEOIS", "PIERRE", "BENOIT", "REY", "LECLERC", "PAYET", "ROLLAND",
    "LECLERCQ", "GUILLAUME", "LECOMTE", "LOPEZ", "JEAN", "DUPUY", "GUILLOT", "HUBERT", "BERGER",
    "CARPENTIER", "SANCHEZ", "DUPUIS", "MOULIN", "LOUIS", "DESCHAMPS", "HUET", "VASSEUR", "PEREZ",
    "BOUCHER", "FLEURY", "ROYER", "KLEIN", "JACQUET", "ADAM", "PARIS", "POIRIER", "MARTY",
    "AUBRY", "GUYOT", "CARRE", "CHARLES", "RENAULT", "CHARPENTIER", "MENARD", "MAILLARD", "BARON",
    "BERTIN", "BAILLY", "HERVE", "SCHNEIDER", "FERNANDEZ", "LE GALL", "COLLET", "LEGER",
    "BOUVIER", "JULIEN", "PREVOST", "MILLET", "PERROT", "DANIEL", "LE ROUX", "COUSIN", "GERMAIN",
    "BRETON", "BESSON", "LANGLOIS", "REMY", "LE GOFF", "PELLETIER", "LEVEQUE", "PERRIER",
    "LEBLANC", "BARRE", "LEBRUN", "MARCHAL", "WEBER", "MALLET", "HAMON", "BOULANGER", "JACOB",
    "MONNIER", "MICHAUD", "RODRIGUEZ", "GUICHARD", "GILLET", "ETIENNE", "GRONDIN", "POULAIN",
    "TESSIER", "CHEVALLIER", "COLLIN", "CHAUVIN", "DA SILVA", "BOUCHET", "GAY", "LEMAITRE",
    "BENARD", "MARECHAL", "HUMBERT", "REYNAUD", "ANTOINE", "HOARAU", "PERRET", "BARTHELEMY",
    "CORDIER", "PICHON", "LEJEUNE", "GILBERT", "LAMY", "DELAUNAY", "PASQUIER", "CARLIER",
    "LAPORTE", "BENSAID", "HADDAD", "BENALI", "NGUYEN", "DOS SANTOS", "FERREIRA", "PEREIRA",
    "DIALLO", "TRAORE", "RUSSO", "ESPOSITO", "YILMAZ",
];

/// Surnames typical of a region, used for a share of its residents: (region, surnames).
#[rustfmt::skip]
pub(super) const REGIONAL_SURNAMES: &[(&str, &[&str])] = &[
    ("94", &["SANTONI", "LUCIANI", "MATTEI", "ALBERTINI", "LECA", "ORSINI", "PIERI", "FILIPPI",
             "CASANOVA", "PAOLI", "BIANCHI", "COLONNA"]),
    ("53", &["LE GALL", "LE GOFF", "LE ROUX", "GUILLOU", "LE BRIS", "MORVAN", "TANGUY", "LE BIHAN",
             "KERBRAT", "LE CORRE", "LE FLOCH", "CORRE"]),
    ("04", &["PAYET", "HOARAU", "GRONDIN", "FONTAINE", "RIVIERE", "BOYER", "TECHER", "DIJOUX",
             "LEBON", "NATIVEL", "MUSSARD", "HOAREAU"]),
    ("06", &["MADI", "ATTOUMANI", "SAID", "ALI", "ABDALLAH", "COMBO", "AHAMADA", "MOHAMED",
             "SOILIHI", "HOUMADI"]),
    ("01", &["JEAN-BAPTISTE", "JOSEPH", "ALEXIS", "BELAIR", "SAINT-LOUIS", "LUBIN", "NUMA",
             "ETIENNE"]),
    ("02", &["JEAN-BAPTISTE", "JOSEPH", "ALEXANDRE", "LOUIS-JOSEPH", "MARIE-SAINTE", "ROSE",
             "DESIRE"]),
    ("03", &["JEAN-BAPTISTE", "LOUIS", "JOSEPH", "ALEXANDRE", "PIERRE-LOUIS", "DA SILVA",
             "SANTOS"]),
];

/// Surnames typical of Alsace and Moselle (départements 57, 67, 68).
#[rustfmt::skip]
pub(super) const ALSACE_SURNAMES: &[&str] = &[
    "MULLER", "SCHMITT", "MEYER", "KLEIN", "WEBER", "SCHNEIDER", "FISCHER", "WAGNER", "BECKER",
    "HOFFMANN", "SCHMIDT", "KOCH", "WALTER", "ZIMMERMANN",
];

/// First names, upper case, for sole traders' names in the company register.
#[rustfmt::skip]
pub(super) const FIRST_NAMES: &[&str] = &[
    "JEAN", "PIERRE", "MICHEL", "PHILIPPE", "ALAIN", "NICOLAS", "CHRISTOPHE", "LAURENT",
    "FREDERIC", "STEPHANE", "DAVID", "JULIEN", "SEBASTIEN", "THOMAS", "MARIE", "NATHALIE",
    "ISABELLE", "SYLVIE", "CATHERINE", "SANDRINE", "CELINE", "AURELIE", "JULIE", "SOPHIE",
    "CAROLINE", "STEPHANIE", "VALERIE", "CHRISTINE", "EMILIE", "CAMILLE", "KARIM", "MEHDI",
];

/// Countries of birth for people born abroad: (INSEE COG country code, relative weight).
#[rustfmt::skip]
pub(super) const BIRTH_COUNTRIES: &[(u32, u32)] = &[
    (99352, 130), // Algérie
    (99350, 120), // Maroc
    (99139, 80),  // Portugal
    (99351, 50),  // Tunisie
    (99127, 40),  // Italie
    (99208, 35),  // Turquie
    (99134, 30),  // Espagne
    (99114, 20),  // Roumanie
    (99109, 20),  // Allemagne
    (99131, 20),  // Belgique
    (99132, 20),  // Royaume-Uni
    (99341, 25),  // Sénégal
    (99326, 25),  // Côte d'Ivoire
    (99322, 20),  // Cameroun
    (99333, 20),  // Madagascar
    (99335, 15),  // Mali
    (99410, 15),  // Haïti
    (99216, 15),  // Chine
    (99243, 15),  // Viêt Nam
    (99397, 15),  // Comores
    (99140, 10),  // Suisse
];

/// INSEE COG code of the Comoros, the main country of birth of people born abroad in Mayotte.
pub(super) const COMOROS: u32 = 99397;

/// How a diagnosis relates to birth and diabetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// Any patient.
    General,
    /// Stay that starts on the day of birth (newborn).
    Birth,
    /// Type 1 diabetes (E10): only for patients with type 1 diabetes.
    Diabetes1,
    /// Type 2 and other diabetes (E11, E13, E14): only for patients with type 2 diabetes.
    Diabetes2,
}

/// One ICD-10 main diagnosis with its stay profile.
#[derive(Debug)]
pub(super) struct Diagnosis {
    /// ICD-10 code, with a dot before the fourth character.
    pub code: &'static str,
    pub family: Family,
    /// Relative frequency per age band: under 1, 1–14, 15–44, 45–64, 65–79, 80 and over.
    pub weights: [u16; 6],
    /// Frequency multiplier for men (0 excludes them).
    pub male: f64,
    /// Frequency multiplier for women (0 excludes them).
    pub female: f64,
    /// Frequency multiplier for patients with diabetes (complications of diabetes).
    pub diabetic: f64,
    /// Share of stays without a night (ambulatory care, sessions).
    pub ambulatory: f64,
    /// Mean length of stay in days, for stays with at least one night.
    pub mean_los: f64,
    /// Base cost of the stay in euros.
    pub base_cost: f64,
    /// Cost per day in euros.
    pub daily_cost: f64,
}

/// Builds a [`Diagnosis`]: `sex` = (men, women) multipliers, `los` = (ambulatory share, mean
/// length of stay), `costs` = (base, per day).
const fn dx(
    code: &'static str,
    family: Family,
    weights: [u16; 6],
    sex: (f64, f64),
    diabetic: f64,
    los: (f64, f64),
    costs: (f64, f64),
) -> Diagnosis {
    Diagnosis {
        code,
        family,
        weights,
        male: sex.0,
        female: sex.1,
        diabetic,
        ambulatory: los.0,
        mean_los: los.1,
        base_cost: costs.0,
        daily_cost: costs.1,
    }
}

const ANY: (f64, f64) = (1.0, 1.0);
const MEN: (f64, f64) = (1.0, 0.0);
const WOMEN: (f64, f64) = (0.0, 1.0);

use Family::{Birth, Diabetes1, Diabetes2, General};

/// Main diagnoses of the synthetic hospital stays (PMSI MCO style). Columns: code, family,
/// weights per age band, (men, women), diabetic multiplier, (ambulatory share, mean length of
/// stay), (base cost, cost per day).
#[rustfmt::skip]
pub(super) const DIAGNOSES: &[Diagnosis] = &[
    // newborns and infants
    dx("Z38.0", Birth,   [600, 0, 0, 0, 0, 0],        ANY,        1.0, (0.0, 3.5),  (650.0, 120.0)),
    dx("P07.3", Birth,   [40, 0, 0, 0, 0, 0],         (1.1, 1.0), 1.0, (0.0, 18.0), (3200.0, 1100.0)),
    dx("P59.9", General, [60, 0, 0, 0, 0, 0],         ANY,        1.0, (0.1, 3.0),  (900.0, 350.0)),
    dx("J21.9", General, [150, 20, 0, 0, 0, 0],       (1.2, 1.0), 1.0, (0.15, 4.0), (1800.0, 450.0)),
    // respiratory
    dx("J45.9", General, [0, 40, 10, 5, 3, 1],        ANY,        1.0, (0.2, 3.0),  (1500.0, 400.0)),
    dx("J18.9", General, [10, 30, 15, 30, 60, 90],    ANY,        1.1, (0.03, 7.0), (2500.0, 420.0)),
    dx("J44.1", General, [0, 0, 0, 15, 35, 30],       (1.4, 0.8), 1.1, (0.02, 8.0), (2600.0, 420.0)),
    // circulatory
    dx("I21.4", General, [0, 0, 2, 20, 25, 20],       (1.8, 0.7), 2.0, (0.0, 5.0),  (4200.0, 500.0)),
    dx("I21.0", General, [0, 0, 2, 10, 10, 8],        (2.0, 0.6), 2.0, (0.0, 6.0),  (5200.0, 550.0)),
    dx("I50.9", General, [0, 0, 0, 8, 35, 70],        ANY,        2.0, (0.02, 9.0), (3000.0, 400.0)),
    dx("I48.9", General, [0, 0, 2, 12, 25, 25],       (1.2, 0.9), 1.2, (0.25, 4.0), (2200.0, 400.0)),
    dx("I63.9", General, [0, 0, 2, 10, 25, 35],       ANY,        1.8, (0.0, 10.0), (5000.0, 450.0)),
    dx("I10",   General, [0, 0, 2, 6, 8, 8],          ANY,        1.5, (0.4, 3.0),  (1300.0, 380.0)),
    dx("R07.4", General, [0, 2, 20, 25, 20, 12],      ANY,        1.2, (0.5, 1.5),  (900.0, 350.0)),
    dx("R55",   General, [0, 3, 15, 15, 20, 25],      ANY,        1.0, (0.3, 3.0),  (1400.0, 380.0)),
    // infections, kidney
    dx("A41.9", General, [10, 3, 3, 8, 18, 30],       ANY,        1.5, (0.0, 12.0), (5500.0, 550.0)),
    dx("N39.0", General, [10, 10, 15, 10, 20, 40],    (0.6, 1.4), 1.3, (0.1, 5.0),  (1900.0, 380.0)),
    dx("N18.5", General, [0, 0, 1, 6, 10, 8],         ANY,        3.0, (0.05, 7.0), (3000.0, 450.0)),
    dx("Z49.1", General, [0, 0, 3, 30, 45, 25],       (1.4, 0.8), 3.0, (1.0, 1.0),  (320.0, 0.0)),
    // cancer
    dx("Z51.1", General, [0, 2, 15, 60, 70, 25],      ANY,        1.0, (1.0, 1.0),  (450.0, 0.0)),
    dx("C34.9", General, [0, 0, 1, 10, 15, 6],        (1.7, 0.7), 1.0, (0.2, 8.0),  (4500.0, 500.0)),
    dx("C50.9", General, [0, 0, 5, 20, 15, 6],        WOMEN,      1.0, (0.3, 3.0),  (3800.0, 500.0)),
    dx("C61",   General, [0, 0, 0, 8, 20, 10],        MEN,        1.0, (0.2, 4.0),  (4000.0, 450.0)),
    dx("C18.9", General, [0, 0, 1, 8, 15, 10],        ANY,        1.0, (0.05, 9.0), (7000.0, 500.0)),
    // digestive
    dx("K35.8", General, [0, 40, 40, 10, 4, 2],       ANY,        1.0, (0.1, 3.0),  (2900.0, 450.0)),
    dx("K80.2", General, [0, 0, 25, 25, 20, 10],      (0.7, 1.3), 1.2, (0.35, 2.5), (2800.0, 400.0)),
    dx("K40.9", General, [5, 10, 10, 20, 20, 8],      MEN,        1.0, (0.6, 1.5),  (2000.0, 400.0)),
    dx("K57.3", General, [0, 0, 3, 10, 15, 12],       ANY,        1.0, (0.1, 6.0),  (3200.0, 420.0)),
    // injuries, joints, eyes
    dx("S72.0", General, [0, 0, 1, 4, 20, 80],        (0.6, 1.5), 1.0, (0.0, 10.0), (6500.0, 450.0)),
    dx("S06.0", General, [5, 40, 30, 12, 10, 15],     (1.3, 0.8), 1.0, (0.4, 1.5),  (900.0, 380.0)),
    dx("S52.5", General, [0, 30, 10, 12, 15, 12],     (0.8, 1.3), 1.0, (0.6, 1.5),  (1800.0, 400.0)),
    dx("M17.1", General, [0, 0, 1, 15, 25, 8],        (0.8, 1.2), 1.2, (0.05, 4.0), (6500.0, 350.0)),
    dx("M16.1", General, [0, 0, 1, 12, 22, 8],        ANY,        1.2, (0.05, 4.0), (6800.0, 350.0)),
    dx("H25.9", General, [0, 0, 0, 10, 60, 45],       ANY,        1.5, (0.95, 1.0), (1350.0, 300.0)),
    // nervous system, mental health, metabolism
    dx("G47.3", General, [0, 1, 3, 15, 12, 3],        (1.5, 0.6), 1.5, (0.3, 1.0),  (700.0, 300.0)),
    dx("G40.9", General, [5, 15, 8, 5, 5, 4],         ANY,        1.0, (0.2, 3.0),  (1700.0, 420.0)),
    dx("F10.2", General, [0, 0, 12, 15, 5, 1],        (2.5, 0.8), 1.0, (0.05, 10.0), (2500.0, 300.0)),
    dx("F32.9", General, [0, 2, 12, 10, 6, 4],        (0.7, 1.3), 1.0, (0.05, 15.0), (2500.0, 300.0)),
    dx("F20.9", General, [0, 0, 5, 3, 1, 0],          (1.5, 0.7), 1.0, (0.0, 30.0), (4000.0, 280.0)),
    dx("E66.0", General, [0, 1, 8, 8, 2, 0],          (0.5, 1.5), 2.0, (0.05, 3.0), (5000.0, 400.0)),
    dx("E86",   General, [5, 5, 2, 3, 10, 30],        ANY,        1.3, (0.1, 5.0),  (1800.0, 380.0)),
    // pregnancy and delivery (O24.4: diabetes arising in pregnancy)
    dx("O80",   General, [0, 0, 90, 0, 0, 0],         WOMEN,      1.0, (0.0, 3.5),  (2600.0, 250.0)),
    dx("O82.0", General, [0, 0, 12, 0, 0, 0],         WOMEN,      1.2, (0.0, 4.5),  (4200.0, 300.0)),
    dx("O82.1", General, [0, 0, 10, 0, 0, 0],         WOMEN,      1.2, (0.0, 5.0),  (4600.0, 320.0)),
    dx("O24.4", General, [0, 0, 6, 0, 0, 0],          WOMEN,      1.0, (0.3, 3.0),  (1600.0, 300.0)),
    // type 1 diabetes (E10), only for patients with type 1 diabetes
    dx("E10.9", Diabetes1, [0, 15, 20, 15, 10, 8],    ANY,        1.0, (0.5, 3.0),  (1200.0, 420.0)),
    dx("E10.1", Diabetes1, [0, 10, 10, 4, 2, 1],      ANY,        1.0, (0.0, 4.0),  (3000.0, 520.0)),
    dx("E10.6", Diabetes1, [0, 2, 5, 5, 5, 4],        ANY,        1.0, (0.3, 5.0),  (2300.0, 430.0)),
    dx("E10.5", Diabetes1, [0, 0, 1, 4, 5, 4],        ANY,        1.0, (0.05, 10.0), (4200.0, 480.0)),
    dx("E10.3", Diabetes1, [0, 0, 3, 5, 5, 3],        ANY,        1.0, (0.9, 1.0),  (900.0, 300.0)),
    dx("E10.2", Diabetes1, [0, 0, 2, 4, 5, 3],        ANY,        1.0, (0.2, 6.0),  (2600.0, 450.0)),
    dx("E10.7", Diabetes1, [0, 0, 1, 3, 4, 3],        ANY,        1.0, (0.1, 8.0),  (3200.0, 450.0)),
    // type 2 and other diabetes (E11, E13, E14), only for patients with type 2 diabetes
    dx("E11.9", Diabetes2, [0, 0, 10, 30, 30, 25],    ANY,        1.0, (0.5, 4.0),  (1200.0, 420.0)),
    dx("E11.5", Diabetes2, [0, 0, 1, 12, 18, 15],     (1.4, 0.8), 1.0, (0.05, 12.0), (4200.0, 480.0)),
    dx("E11.2", Diabetes2, [0, 0, 2, 10, 15, 12],     ANY,        1.0, (0.2, 6.0),  (2600.0, 450.0)),
    dx("E11.3", Diabetes2, [0, 0, 2, 10, 12, 6],      ANY,        1.0, (0.9, 1.0),  (900.0, 300.0)),
    dx("E11.4", Diabetes2, [0, 0, 1, 6, 8, 5],        ANY,        1.0, (0.3, 5.0),  (2100.0, 420.0)),
    dx("E11.6", Diabetes2, [0, 0, 2, 6, 8, 8],        ANY,        1.0, (0.3, 6.0),  (2300.0, 430.0)),
    dx("E11.7", Diabetes2, [0, 0, 1, 5, 9, 9],        ANY,        1.0, (0.1, 8.0),  (3200.0, 450.0)),
    dx("E11.0", Diabetes2, [0, 0, 0, 1, 2, 3],        ANY,        1.0, (0.0, 7.0),  (3500.0, 520.0)),
    dx("E11.1", Diabetes2, [0, 0, 1, 2, 1, 1],        ANY,        1.0, (0.0, 5.0),  (3000.0, 520.0)),
    dx("E11.8", Diabetes2, [0, 0, 1, 4, 5, 5],        ANY,        1.0, (0.3, 5.0),  (2000.0, 420.0)),
    dx("E13.9", Diabetes2, [0, 0, 1, 2, 2, 1],        ANY,        1.0, (0.4, 4.0),  (1300.0, 420.0)),
    dx("E14.9", Diabetes2, [0, 0, 1, 3, 4, 5],        ANY,        1.0, (0.4, 4.0),  (1300.0, 420.0)),
];

/// Diagnosis used for an infant when a birth diagnosis is drawn for a child born before the
/// stay period (bronchiolitis).
pub(super) const INFANT_FALLBACK: &str = "J21.9";

/// One line of business (NAF rév. 2) with its company-name patterns.
#[derive(Debug)]
pub(super) struct Activity {
    /// NAF rév. 2 code, e.g. `62.01Z`.
    pub naf: &'static str,
    /// Relative frequency among establishments.
    pub weight: u32,
    /// Name patterns: `{N}` a surname, `{P}` a first name, `{Q}` a place word, `{S}` a saint
    /// or garden name. `{N} {P}` is a sole trader registered under their own name.
    pub names: &'static [&'static str],
    /// Legal-form prefixes (an empty string means no prefix).
    pub forms: &'static [&'static str],
    /// Median headcount of an establishment (0 for companies without employees).
    pub median_staff: f64,
    /// Annual turnover per employee, or per establishment when the median headcount is 0.
    pub turnover: f64,
}

const fn act(
    naf: &'static str,
    weight: u32,
    names: &'static [&'static str],
    forms: &'static [&'static str],
    median_staff: f64,
    turnover: f64,
) -> Activity {
    Activity {
        naf,
        weight,
        names,
        forms,
        median_staff,
        turnover,
    }
}

/// Lines of business of the synthetic establishments: NAF code, weight, name patterns, legal
/// forms, median headcount, turnover per employee (euros).
#[rustfmt::skip]
pub(super) const ACTIVITIES: &[Activity] = &[
    act("10.71C", 40, &["BOULANGERIE {N}", "BOULANGERIE PATISSERIE {N}", "LE FOURNIL DE {P}", "MAISON {N}"],
        &["SARL", "SAS", "EURL", ""], 5.0, 70_000.0),
    act("47.11F", 3, &["{N} DISTRIBUTION", "HYPER {N}"], &["SAS", "SA"], 180.0, 280_000.0),
    act("47.11D", 10, &["{N} DISTRIBUTION", "SUPERMARCHE {N}", "{N} ALIMENTATION"], &["SAS", "SARL"], 35.0, 250_000.0),
    act("47.73Z", 20, &["PHARMACIE {N}", "PHARMACIE DU CENTRE", "PHARMACIE DE LA GARE", "PHARMACIE DU {Q}"],
        &["SELARL", "SNC", "EURL", ""], 6.0, 300_000.0),
    act("56.10A", 50, &["RESTAURANT {N}", "CHEZ {P}", "L'AUBERGE DU {Q}", "LE RELAIS DU {Q}", "BRASSERIE DU {Q}"],
        &["SARL", "SAS", ""], 5.0, 65_000.0),
    act("56.10C", 30, &["SNACK DU {Q}", "PIZZA {P}", "SANDWICHERIE {N}"], &["SARL", "SASU", "EURL"], 4.0, 60_000.0),
    act("62.01Z", 30, &["{N} INFORMATIQUE", "{N} SOLUTIONS", "{N} DIGITAL", "{N} CONSULTING"],
        &["SAS", "SASU", "SARL"], 8.0, 120_000.0),
    act("62.02A", 15, &["{N} CONSEIL", "{N} SYSTEMES", "{N} IT SERVICES"], &["SAS", "SASU"], 10.0, 130_000.0),
    act("86.10Z", 3, &["CLINIQUE {S}", "POLYCLINIQUE {S}", "CLINIQUE DU {Q}"], &["SAS", "SA", ""], 250.0, 85_000.0),
    act("86.21Z", 40, &["{N} {P}", "CABINET MEDICAL {N}", "CABINET MEDICAL DU {Q}", "MAISON MEDICALE DU {Q}"],
        &["", "SELARL", "SCM"], 1.0, 150_000.0),
    act("86.23Z", 15, &["{N} {P}", "CABINET DENTAIRE {N}", "CENTRE DENTAIRE DU {Q}"], &["", "SELARL"], 2.0, 140_000.0),
    act("49.41A", 20, &["TRANSPORTS {N}", "{N} LOGISTIQUE", "TRANSPORTS {N} ET FILS"], &["SAS", "SARL", "SA"], 12.0, 110_000.0),
    act("41.20A", 10, &["MAISONS {N}", "{N} CONSTRUCTION"], &["SAS", "SARL"], 8.0, 160_000.0),
    act("43.99C", 30, &["MACONNERIE {N}", "{N} BATIMENT", "ENTREPRISE {N}"], &["SARL", "SAS", "EURL", ""], 4.0, 90_000.0),
    act("43.22A", 30, &["PLOMBERIE {N}", "{N} CHAUFFAGE", "{N} {P}"], &["SARL", "EURL", ""], 2.0, 95_000.0),
    act("43.21A", 30, &["ELECTRICITE {N}", "{N} ELEC", "{N} {P}"], &["SARL", "EURL", ""], 3.0, 95_000.0),
    act("45.20A", 30, &["GARAGE {N}", "GARAGE DU {Q}", "{N} AUTOMOBILES"], &["SARL", "SAS", "EURL", ""], 4.0, 150_000.0),
    act("96.02A", 30, &["COIFFURE {P}", "{P} COIFFURE", "L'ATELIER DE {P}", "SALON {P}"],
        &["SARL", "EURL", "SASU", ""], 2.0, 50_000.0),
    act("68.20B", 60, &["SCI {N}", "SCI DU {Q}", "SCI {N} {P}"], &[""], 0.0, 30_000.0),
    act("69.20Z", 15, &["CABINET {N}", "{N} EXPERTISE COMPTABLE", "{N} ET ASSOCIES"], &["SAS", "SARL"], 8.0, 90_000.0),
    act("01.11Z", 20, &["EARL {N}", "GAEC DU {Q}", "EARL DU {Q}", "{N} {P}"], &[""], 1.0, 180_000.0),
    act("55.10Z", 10, &["HOTEL DU {Q}", "HOTEL {S}", "GRAND HOTEL DU {Q}"], &["SARL", "SAS"], 8.0, 75_000.0),
    act("85.59A", 15, &["{N} FORMATION", "INSTITUT {N}", "{N} FORMATIONS CONSEIL"], &["SAS", "SARL", "SASU"], 4.0, 90_000.0),
    act("88.10A", 10, &["{N} SERVICES A DOMICILE", "AIDE A DOMICILE DU {Q}"], &["SAS", "SARL", ""], 25.0, 35_000.0),
    act("25.62B", 10, &["MECANIQUE {N}", "{N} USINAGE", "ATELIERS {N}"], &["SAS", "SARL"], 15.0, 110_000.0),
    act("71.12B", 15, &["{N} INGENIERIE", "BUREAU D'ETUDES {N}", "{N} ETUDES"], &["SAS", "SARL"], 10.0, 110_000.0),
    act("47.71Z", 20, &["BOUTIQUE {P}", "{N} MODE", "LES ATELIERS DE {P}"], &["SARL", "SAS", "EURL"], 3.0, 110_000.0),
    act("81.21Z", 15, &["{N} PROPRETE", "{N} NETTOYAGE", "{N} SERVICES"], &["SARL", "SAS"], 20.0, 35_000.0),
    act("70.22Z", 25, &["{N} CONSEIL", "{N} PARTNERS", "{N} ET ASSOCIES"], &["SASU", "SAS", "EURL"], 2.0, 130_000.0),
    act("46.90Z", 10, &["{N} NEGOCE", "{N} DIFFUSION", "COMPTOIR {N}"], &["SAS", "SARL"], 10.0, 400_000.0),
    act("47.30Z", 5, &["STATION SERVICE DU {Q}", "{N} CARBURANTS"], &["SARL", "SAS"], 4.0, 600_000.0),
    act("93.12Z", 10, &["ASSOCIATION SPORTIVE DU {Q}", "FOOTBALL CLUB DU {Q}", "TENNIS CLUB DU {Q}"], &[""], 1.0, 40_000.0),
];

/// Masculine place words used after "DU" in company names.
#[rustfmt::skip]
pub(super) const PLACES: &[&str] = &[
    "MOULIN", "PORT", "LAC", "MARCHE", "PONT", "CHATEAU", "PARC", "CLOCHER", "VALLON", "BOURG",
    "CENTRE", "CANAL", "PLATEAU", "VIGNOBLE", "MAIL", "CHAMP DE FOIRE",
];

/// Saint and garden names used in clinic and hotel names.
#[rustfmt::skip]
pub(super) const SAINTS: &[&str] = &[
    "SAINT-JOSEPH", "SAINT-JEAN", "SAINTE-MARIE", "SAINT-MARTIN", "DES CEDRES", "DES LILAS",
    "DU PARC", "DE L'ESPERANCE", "PASTEUR", "DES TILLEULS", "SAINT-GEORGES", "DES ROSIERS",
];
