# placeholder until report.figures lands
