// amqplib end-to-end check: publish with a confirm channel, consume with acks.
// Usage: node app.js AMQP_URL QUEUE COUNT
// Prints one JSON line describing what it observed.
'use strict';
const amqp = require('amqplib');

async function main() {
  const [url, queue, countArg] = process.argv.slice(2);
  const count = parseInt(countArg || '100', 10);
  const conn = await amqp.connect(url);
  const out = {};
  try {
    const pub = await conn.createConfirmChannel();
    const ok = await pub.assertQueue(queue, { durable: false, autoDelete: false });
    out.declare = { messageCount: ok.messageCount, consumerCount: ok.consumerCount };
    let confirmed = 0;
    for (let i = 0; i < count; i++) {
      pub.sendToQueue(queue, Buffer.from(`msg-${i}`),
        { persistent: true, headers: { i }, messageId: `id-${i}`, contentType: 'text/plain' },
        (err) => { if (!err) confirmed += 1; });
    }
    await pub.waitForConfirms();
    out.confirmed = confirmed;

    const con = await conn.createChannel();
    await con.prefetch(10);
    const bodies = [];
    const headersOk = [];
    let consumerTag = null;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('consume timeout')), 10000);
      con.consume(queue, (msg) => {
        if (msg === null) { out.cancelledByServer = true; return; }
        bodies.push(msg.content.toString());
        headersOk.push(msg.properties.headers.i === bodies.length - 1 &&
                       msg.properties.messageId === `id-${bodies.length - 1}`);
        con.ack(msg);
        if (bodies.length === count) { clearTimeout(timer); resolve(); }
      }, { noAck: false }).then((ok) => { consumerTag = ok.consumerTag; }).catch(reject);
    });
    await con.cancel(consumerTag);
    out.received = bodies.length;
    out.inOrder = bodies.every((b, i) => b === `msg-${i}`);
    out.propertiesOk = headersOk.every(Boolean);
    const check = await con.checkQueue(queue);
    out.afterAck = { messageCount: check.messageCount, consumerCount: check.consumerCount };
    const del = await con.deleteQueue(queue);
    out.deleted = del.messageCount;
    await con.close();
    await pub.close();
  } finally {
    await conn.close();
  }
  console.log(JSON.stringify(out));
}

main().catch((err) => { console.log(JSON.stringify({ error: String(err) })); process.exit(1); });
