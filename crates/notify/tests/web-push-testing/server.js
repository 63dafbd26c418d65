// npm's web-push-testing (a Web Push service that decrypts what it receives) on a port the
// system picks; prints `listening on PORT`. Run `npm ci` in this folder first.
const TestingServer = require('web-push-testing/src/server.js');
const {PushApiModel} = require('web-push-testing/src/PushApiModel.js');

const model = new PushApiModel();
const server = new TestingServer(model, 0);
server.startServer();
const {port} = server._server.address();
model.notifyUrl = 'http://localhost:' + port + '/notify/';
console.log('listening on ' + port);
