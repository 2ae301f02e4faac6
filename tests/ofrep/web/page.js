// ?base=<Flagsite URL>&key=<SDK key>&poll=<ms>: evaluate through OpenFeature, as an app would.
import { OpenFeature, ProviderEvents } from "@openfeature/web-sdk";
import { OFREPWebProvider } from "@openfeature/ofrep-web-provider";

const params = new URLSearchParams(location.search);
const provider = new OFREPWebProvider({
  baseUrl: params.get("base"),
  headers: [["Authorization", `Bearer ${params.get("key")}`]],
  pollInterval: Number(params.get("poll") || 1000),
  changeDetection: "polling",
  cacheMode: "disabled",
});

window.changes = [];
try {
  await OpenFeature.setContext({ targetingKey: "user-1", country: "US" });
  await OpenFeature.setProviderAndWait(provider);
  const client = OpenFeature.getClient();
  client.addHandler(ProviderEvents.ConfigurationChanged, (event) => {
    window.changes.push({ flagsChanged: event.flagsChanged || [] });
  });
  window.evaluate = (key, fallback) => {
    const details = typeof fallback === "boolean" ? client.getBooleanDetails(key, fallback)
      : client.getStringDetails(key, fallback);
    return { value: details.value, reason: details.reason, variant: details.variant, errorCode: details.errorCode };
  };
  document.getElementById("status").textContent = "ready";
  window.ready = true;
} catch (error) {
  document.getElementById("status").textContent = `failed: ${error}`;
  window.failed = String(error);
}
