// Drives the real Segment "Braze Cloud Mode (Actions)" destination
// (@segment/action-destinations, unmodified, default mappings) against a
// running cohortd: COHORTD_URL and COHORTD_KEY (a workspace REST key).
// Prints one JSON line per step: what the client sent and what it marked
// delivered or failed. tests/segment_destination.rs runs it and checks
// both the client's verdicts and the state read back from cohortd.
'use strict';
const { createRequestClient, createTestIntegration } = require('@segment/actions-core');
const braze = require('@segment/action-destinations/dist/destinations/braze').default;

const settings = { api_key: process.env.COHORTD_KEY, endpoint: process.env.COHORTD_URL, app_id: 'app-1' };
const t = createTestIntegration(braze);

function report(step, fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + '\n');
}

async function single(step, action, event, mapping) {
  try {
    const responses = await t.testAction(action, { event, mapping, settings, useDefaultMappings: true });
    report(step, { ok: true, http: responses.map((r) => r.status), bodies: responses.map((r) => r.data) });
  } catch (e) {
    report(step, { ok: false, error: String(e.message) });
  }
}

async function batch(step, action, events, mapping) {
  try {
    const responses = await t.testBatchAction(action, { events, mapping, settings, useDefaultMappings: true });
    const multistatus = (t.results[0] && t.results[0].multistatus) || [];
    report(step, {
      ok: true,
      http: responses.map((r) => r.status),
      headers: responses.map((r) => r.options && r.options.headers && r.options.headers.get('x-braze-batch')),
      statuses: multistatus.map((m) => m.status),
      errors: multistatus.map((m) => m.errormessage || null)
    });
  } catch (e) {
    report(step, { ok: false, error: String(e.message) });
  }
}

const deep = { a: { b: { c: { d: { e: { f: 1 } } } } } };

(async () => {
  await single('identify_u1', 'updateUserProfile', {
    type: 'identify',
    userId: 'u1',
    traits: { email: 'Ann@Example.com', first_name: 'Ann', address: { city: 'Lisbon', country: 'PT' }, company: { name: 'Acme' } },
    context: { location: { latitude: 38.72, longitude: -9.14 } }
  });
  await single('identify_email_only', 'updateUserProfile', {
    type: 'identify',
    userId: null,
    anonymousId: 'anon-e',
    traits: { email: 'only@example.com' },
    context: {}
  });
  await batch('batch_profiles', 'updateUserProfile', [
    { type: 'identify', userId: 'u3', traits: { plan: 'pro' }, context: {} },
    { type: 'identify', userId: 'u4', traits: { address: { city: 'Porto' } }, context: {} },
    { type: 'identify', userId: 'u5', traits: { deep }, context: {} }
  ]);
  await single('track_u1', 'trackEvent', { type: 'track', userId: 'u1', event: 'Clicked', properties: { k: 1 } });
  await batch('batch_events_existing_only', 'trackEvent', [
    { type: 'track', userId: 'u1', event: 'Viewed' },
    { type: 'track', userId: 'ghost', event: 'Viewed' }
  ], { _update_existing_only: true });
  await single('purchase_u1', 'trackPurchase', {
    type: 'track',
    userId: 'u1',
    event: 'Order Completed',
    properties: { products: [{ product_id: 'p1', price: 10, quantity: 1 }, { product_id: 'p2', price: 5, quantity: 2 }] }
  });
  await single('alias_anon', 'createAlias', { type: 'alias', userId: null, anonymousId: 'anon-1' }, {
    alias_name: 'anon-1',
    alias_label: 'segment'
  });
  await single('identify_alias', 'identifyUser', { type: 'identify', userId: 'u2' }, {
    external_id: 'u2',
    user_alias: { alias_name: 'anon-1', alias_label: 'segment' }
  });
  // Segment's user deletion: the destination's own onDelete, with the
  // request client its extendRequest configures. (Destination.onDelete
  // would first check the endpoint against Braze's list of hosts.)
  try {
    const client = createRequestClient(braze.extendRequest({ settings }));
    const payload = { userId: 'u3', anonymousId: null };
    const r = await braze.onDelete(client, { payload, settings });
    report('delete_u3', { ok: true, http: [r.status], bodies: [r.data] });
  } catch (e) {
    report('delete_u3', { ok: false, error: String(e.message) });
  }
})();
