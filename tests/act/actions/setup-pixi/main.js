require(`${process.env.NBCI_ACT_DIR}/standins.js`).setupPixi();
