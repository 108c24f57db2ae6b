// Nhận cụm loa (headend/templates/claim.html): the phone's position into the form.
document.querySelector("[data-here]").addEventListener("click", function () {
  if (!navigator.geolocation) return;
  navigator.geolocation.getCurrentPosition(function (p) {
    document.querySelector("[name=lat]").value = p.coords.latitude.toFixed(6);
    document.querySelector("[name=lon]").value = p.coords.longitude.toFixed(6);
  });
});
