"""Demo jurisdictions: Taipei City's police precincts (分局), from approximate station positions.

The positions are the precinct headquarters' approximate coordinates and the
outline a coarse trace of the city boundary; good enough to route a demo SOS,
not an official map. `taipei_precincts()` gives the Voronoi precincts.
"""

from shapely import Polygon

from geo.jurisdictions import Precinct, Station, voronoi_precincts

STATIONS = (
    Station("zhongzheng-1", "Zhongzheng First Precinct", 25.0407, 121.5129),
    Station("zhongzheng-2", "Zhongzheng Second Precinct", 25.0250, 121.5190),
    Station("datong", "Datong Precinct", 25.0634, 121.5130),
    Station("wanhua", "Wanhua Precinct", 25.0353, 121.4997),
    Station("zhongshan", "Zhongshan Precinct", 25.0566, 121.5328),
    Station("daan", "Da'an Precinct", 25.0261, 121.5435),
    Station("xinyi", "Xinyi Precinct", 25.0336, 121.5717),
    Station("songshan", "Songshan Precinct", 25.0503, 121.5776),
    Station("shilin", "Shilin Precinct", 25.0927, 121.5247),
    Station("beitou", "Beitou Precinct", 25.1318, 121.4989),
    Station("neihu", "Neihu Precinct", 25.0834, 121.5887),
    Station("nangang", "Nangang Precinct", 25.0550, 121.6068),
    Station("wenshan-1", "Wenshan First Precinct", 25.0027, 121.5574),
    Station("wenshan-2", "Wenshan Second Precinct", 24.9897, 121.5412),
)

# (lon, lat), clockwise from the Guandu river mouth.
OUTLINE = Polygon((
    (121.4572, 25.1085), (121.4660, 25.1400), (121.5050, 25.1800), (121.5400, 25.2100),
    (121.5800, 25.2050), (121.6100, 25.1600), (121.6300, 25.1200), (121.6660, 25.0700),
    (121.6550, 25.0300), (121.6200, 24.9900), (121.5950, 24.9650), (121.5600, 24.9600),
    (121.5300, 24.9800), (121.5150, 25.0050), (121.4900, 25.0250), (121.4850, 25.0450),
    (121.5000, 25.0650), (121.4800, 25.0950),
))


def taipei_precincts() -> list[Precinct]:
    return voronoi_precincts(STATIONS, OUTLINE)
